"""Suite identity: the name and versions of the benchmark a result was measured on.

A suite version pins the families and their level splits. Results and leaderboard entries record
``SUITE`` and ``SUITE_VERSION``; the leaderboard accepts only the versions in ``SUITE_VERSIONS``.
Add a new version (never edit an old one) when a family is added, removed or changed, or when
``envs.levels.SPLIT_VERSION`` is bumped.

Example:
    >>> SUITE, SUITE_VERSION
    ('trajbench', '3')
    >>> SUITE_VERSIONS[SUITE_VERSION]["split_version"]
    1
"""

from __future__ import annotations

from typing import Any

#: Name of the benchmark suite.
SUITE = "trajbench"

#: The version the runner writes into results.json.
SUITE_VERSION = "3"

#: Every version the leaderboard accepts -> what it measures (families and level-split version).
SUITE_VERSIONS: dict[str, dict[str, Any]] = {
    "1": {
        "description": "Dark Room, Dark Key-to-Door, and the level-controlled MiniGrid and "
        "BabyAI families, with level splits of version 1",
        "split_version": 1,
        "families": (
            "trajbench/DarkRoom-v0",
            "trajbench/DarkKeyToDoor-v0",
            "trajbench/FourRooms-v0",
            "trajbench/MultiRoom-v0",
            "trajbench/SimpleCrossing-v0",
            "trajbench/LavaCrossing-v0",
            "trajbench/DoorKey-v0",
            "trajbench/Unlock-v0",
            "trajbench/GoToLocal-v0",
            "trajbench/PickupLoc-v0",
            "trajbench/PutNextLocal-v0",
        ),
    },
    "2": {
        "description": "Suite v2: levels that cannot be copied (MiniGrid/BabyAI -v1 draw the start "
        "pose per episode), the order family DarkSequence-v0, and held-out families whose "
        "actions are trained; level splits of version 1",
        "split_version": 1,
        "families": (
            "trajbench/DarkRoom-v0",
            "trajbench/DarkKeyToDoor-v0",
            "trajbench/DarkSequence-v0",
            "trajbench/FourRooms-v1",
            "trajbench/MultiRoom-v1",
            "trajbench/SimpleCrossing-v1",
            "trajbench/LavaCrossing-v1",
            "trajbench/DoorKey-v1",
            "trajbench/Unlock-v1",
            "trajbench/GoToLocal-v1",
            "trajbench/PickupLoc-v1",
            "trajbench/PutNextLocal-v1",
        ),
    },
    "3": {
        "description": "Suite v3: a level is its content (MiniGrid/BabyAI -v2 draw their levels "
        "over distinct contents, so no test level repeats a training level; generators with few "
        "layouts draw the goal per level), strict verification on BabyAI (the first object "
        "counts), families where the demonstrations are needed (hidden goal or withheld "
        "mission), and DarkFetch, an order family whose shuffled steps lose the order; level "
        "splits of version 1",
        "split_version": 1,
        "families": (
            "trajbench/DarkRoom-v0",
            "trajbench/DarkKeyToDoor-v0",
            "trajbench/DarkSequence-v0",
            "trajbench/DarkFetch-v0",
            "trajbench/FourRooms-v2",
            "trajbench/MultiRoom-v2",
            "trajbench/SimpleCrossing-v2",
            "trajbench/LavaCrossing-v2",
            "trajbench/DoorKey-v2",
            "trajbench/Unlock-v2",
            "trajbench/GoToLocal-v2",
            "trajbench/PickupLoc-v2",
            "trajbench/PutNextLocal-v2",
            "trajbench/HiddenFourRooms-v0",
            "trajbench/HiddenMultiRoom-v0",
            "trajbench/HiddenGoToLocal-v0",
        ),
    },
}
