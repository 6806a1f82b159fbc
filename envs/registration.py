"""Registers every trajbench family in Gymnasium's ``trajbench/`` namespace.

Imported by ``import trajbench`` (Gymnasium 1.x has no plugin entry points), so both
``gym.make("trajbench/DarkRoom-v0")`` and ``gym.make("trajbench:trajbench/DarkRoom-v0")`` work.

Versions follow Gymnasium's rule: a change in behaviour is a new version and the old id stays
registered unchanged. The MiniGrid/BabyAI families are ``-v2`` in suite 3 (levels drawn over distinct
contents, strict BabyAI verification: ``content_split=True``); ``-v1`` (the agent's start pose is
drawn per episode; suite 2) and ``-v0`` (the level fixes the start; suite 1, ``random_start=False``)
are the same classes, kept for the entries that measured them.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any, NamedTuple

import gymnasium as gym

NAMESPACE = "trajbench"


class FamilySpec(NamedTuple):
    """How one family id is registered."""

    entry_point: str
    vector_entry_point: str | None = None
    kwargs: dict[str, Any] = {}


_MG = "trajbench.envs.minigrid_families"
_HIDDEN = "trajbench.envs.minigrid_hidden"


def _minigrid(name: str) -> dict[str, FamilySpec]:
    """A MiniGrid/BabyAI family's three versions, one class: ``-v0`` (the level fixes the start:
    suite 1), ``-v1`` (the episode draws it: suite 2) and ``-v2`` (levels over distinct contents,
    strict BabyAI verification: suite 3)."""
    entry = f"{_MG}:{name}Levels"
    return {
        f"{name}-v0": FamilySpec(entry, kwargs={"random_start": False}),
        f"{name}-v1": FamilySpec(entry),
        f"{name}-v2": FamilySpec(entry, kwargs={"content_split": True}),
    }


#: family id (without namespace) -> how it is registered (a plain ``(entry point, vector entry
#: point)`` tuple works too).
FAMILIES: dict[str, FamilySpec] = {
    "DarkRoom-v0": FamilySpec(
        "trajbench.envs.dark_room:DarkRoomEnv",
        "trajbench.envs.dark_room:DarkRoomVectorEnv",
    ),
    "DarkKeyToDoor-v0": FamilySpec(
        "trajbench.envs.dark_key_to_door:DarkKeyToDoorEnv",
        "trajbench.envs.dark_key_to_door:DarkKeyToDoorVectorEnv",
    ),
    "DarkSequence-v0": FamilySpec(
        "trajbench.envs.dark_sequence:DarkSequenceEnv",
        "trajbench.envs.dark_sequence:DarkSequenceVectorEnv",
    ),
    "DarkFetch-v0": FamilySpec("trajbench.envs.dark_fetch:DarkFetchEnv"),
    **_minigrid("FourRooms"),
    **_minigrid("MultiRoom"),
    **_minigrid("SimpleCrossing"),
    **_minigrid("LavaCrossing"),
    **_minigrid("DoorKey"),
    **_minigrid("Unlock"),
    **_minigrid("GoToLocal"),
    **_minigrid("PickupLoc"),
    **_minigrid("PutNextLocal"),
    # Suite 3: the demonstrations are needed (envs/minigrid_hidden.py).
    "HiddenFourRooms-v0": FamilySpec(f"{_HIDDEN}:HiddenFourRoomsLevels"),
    "HiddenMultiRoom-v0": FamilySpec(f"{_HIDDEN}:HiddenMultiRoomLevels"),
    "HiddenGoToLocal-v0": FamilySpec(f"{_HIDDEN}:HiddenGoToLocalLevels"),
}


def env_ids() -> list[str]:
    """Every registered trajbench id, e.g. ``"trajbench/DarkRoom-v0"``."""
    return [f"{NAMESPACE}/{name}" for name in FAMILIES]


def family_class(env_id: str) -> type:
    """The unwrapped class behind a registered trajbench id, without instantiating it.

    Accepts ``"trajbench/DoorKey-v1"`` or ``"DoorKey-v1"``; use it to call class-level facts
    such as :meth:`~trajbench.envs.levels.LevelMixin.step_events`.

    Raises:
        KeyError: ``env_id`` is not a registered trajbench family.

    Example:
        >>> family_class("trajbench/DoorKey-v1").__name__
        'DoorKeyLevels'
    """
    name = env_id.removeprefix("trajbench:").removeprefix(f"{NAMESPACE}/")
    if name not in FAMILIES:
        raise KeyError(f"unknown trajbench family {env_id!r}; known: {', '.join(env_ids())}")
    module, attr = FamilySpec(*FAMILIES[name]).entry_point.split(":")
    return getattr(import_module(module), attr)


def encoding_family(encoding_name: str) -> type:
    """The first registered family class whose observations use the encoding ``encoding_name``.

    Families that share an encoding read it alike (e.g. their ``obs_text`` and ``action_words``),
    so a policy that knows only the encoding (:class:`~trajbench.envs.levels.ObsEncoding`) reads
    observations through this class.

    Raises:
        KeyError: no registered family uses that encoding.

    Example:
        >>> encoding_family("minigrid").action_words[:3]
        ('turn left', 'turn right', 'forward')
    """
    for name in FAMILIES:
        cls = family_class(name)
        encoding = getattr(cls, "encoding", None)
        if (getattr(cls, "encoding_name", "") or getattr(encoding, "name", "")) == encoding_name:
            return cls
    raise KeyError(
        f"no registered trajbench family uses the observation encoding {encoding_name!r}"
    )


def register_all() -> None:
    """Register every family once (idempotent)."""
    for name, spec in FAMILIES.items():
        env_id = f"{NAMESPACE}/{name}"
        if env_id in gym.registry:
            continue
        spec = FamilySpec(*spec)
        gym.register(
            id=env_id,
            entry_point=spec.entry_point,
            vector_entry_point=spec.vector_entry_point,
            kwargs=dict(spec.kwargs),
        )
