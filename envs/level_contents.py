"""How many distinct contents each family's levels hold (shown by ``trajbench envs``).

Measured over all levels of every family by ``python benchmarks/level_contents.py``, which fails
when a figure here is not the one it measures (and ``tests/test_envs_contents.py`` checks the
smallest families in full). A ``-v0`` id builds the same levels as its ``-v1`` id.
"""

from __future__ import annotations

#: family id (without namespace) -> distinct contents among its levels.
DISTINCT_CONTENTS: dict[str, int] = {
    "DarkRoom-v0": 81,
    "DarkKeyToDoor-v0": 6_561,
    "DarkSequence-v0": 110_536,
    "FourRooms-v1": 9_956,
    "FourRooms-v2": 9_961,
    "MultiRoom-v1": 10_000,
    "MultiRoom-v2": 10_000,
    "SimpleCrossing-v1": 1_403,
    "SimpleCrossing-v2": 6_595,
    "LavaCrossing-v1": 1_383,
    "LavaCrossing-v2": 6_664,
    "DoorKey-v1": 300,
    "DoorKey-v2": 3_351,
    "Unlock-v1": 384,
    "Unlock-v2": 384,
    "GoToLocal-v1": 10_000,
    "GoToLocal-v2": 10_000,
    "PickupLoc-v1": 10_000,
    "PickupLoc-v2": 10_000,
    "PutNextLocal-v1": 10_000,
    "PutNextLocal-v2": 10_000,
    "HiddenFourRooms-v0": 9_952,
    "HiddenMultiRoom-v0": 10_000,
    "HiddenGoToLocal-v0": 10_000,
}


def distinct_contents(family: str) -> int | None:
    """Distinct contents of ``family`` (a ``-v0`` id reads its ``-v1`` figure), or None if
    unmeasured."""
    if family.endswith("-v0") and f"{family[:-3]}-v1" in DISTINCT_CONTENTS:
        family = f"{family[:-3]}-v1"
    return DISTINCT_CONTENTS.get(family)
