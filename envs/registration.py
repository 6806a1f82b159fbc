"""Registers every trajbench family in Gymnasium's ``trajbench/`` namespace.

Imported by ``import trajbench`` (Gymnasium 1.x has no plugin entry points), so both
``gym.make("trajbench/DarkRoom-v0")`` and ``gym.make("trajbench:trajbench/DarkRoom-v0")`` work.
"""

from __future__ import annotations

import gymnasium as gym

NAMESPACE = "trajbench"

#: family id (without namespace) -> (entry point, vector entry point or None)
FAMILIES: dict[str, tuple[str, str | None]] = {
    "DarkRoom-v0": (
        "trajbench.envs.dark_room:DarkRoomEnv",
        "trajbench.envs.dark_room:DarkRoomVectorEnv",
    ),
    "DarkKeyToDoor-v0": (
        "trajbench.envs.dark_key_to_door:DarkKeyToDoorEnv",
        "trajbench.envs.dark_key_to_door:DarkKeyToDoorVectorEnv",
    ),
    "DarkSequence-v0": (
        "trajbench.envs.dark_sequence:DarkSequenceEnv",
        "trajbench.envs.dark_sequence:DarkSequenceVectorEnv",
    ),
    "FourRooms-v0": ("trajbench.envs.minigrid_families:FourRoomsLevels", None),
    "MultiRoom-v0": ("trajbench.envs.minigrid_families:MultiRoomLevels", None),
    "SimpleCrossing-v0": ("trajbench.envs.minigrid_families:SimpleCrossingLevels", None),
    "LavaCrossing-v0": ("trajbench.envs.minigrid_families:LavaCrossingLevels", None),
    "DoorKey-v0": ("trajbench.envs.minigrid_families:DoorKeyLevels", None),
    "Unlock-v0": ("trajbench.envs.minigrid_families:UnlockLevels", None),
    "GoToLocal-v0": ("trajbench.envs.minigrid_families:GoToLocalLevels", None),
    "PickupLoc-v0": ("trajbench.envs.minigrid_families:PickupLocLevels", None),
    "PutNextLocal-v0": ("trajbench.envs.minigrid_families:PutNextLocalLevels", None),
}


def env_ids() -> list[str]:
    """Every registered trajbench id, e.g. ``"trajbench/DarkRoom-v0"``."""
    return [f"{NAMESPACE}/{name}" for name in FAMILIES]


def register_all() -> None:
    """Register every family once (idempotent)."""
    for name, (entry_point, vector_entry_point) in FAMILIES.items():
        env_id = f"{NAMESPACE}/{name}"
        if env_id in gym.registry:
            continue
        gym.register(id=env_id, entry_point=entry_point, vector_entry_point=vector_entry_point)
