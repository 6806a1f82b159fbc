"""The mission of the MiniGrid/BabyAI families as a standard Gymnasium ``Text`` space.

MiniGrid's own ``MissionSpace`` cannot live in shared memory, so ``gym.make_vec(...,
vectorization_mode="async")`` fails on it, and Minari cannot store it without a hand-written
serializer. A ``Text`` space has both. One catch remains in Gymnasium itself: ``AsyncVectorEnv``
reads its shared observation buffer once, when it is built, which works for arrays (views of the
buffer) but freezes text at that first, empty read. :class:`MissionText` is a ``Text`` whose
shared-memory read decodes the buffer each time it is looked at, so the async vector env returns
the current missions; everything else (flattening, batching, Minari's serializer, ``contains``)
is ``Text``'s own.

Example:
    >>> import gymnasium as gym, trajbench
    >>> envs = gym.make_vec("trajbench/GoToLocal-v1", num_envs=2, vectorization_mode="async")
    >>> obs, _ = envs.reset(seed=0)
    >>> obs["mission"]
    ('go to the grey key', 'go to the blue ball')
    >>> envs.close()
"""

from __future__ import annotations

import string
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector.utils import read_from_shared_memory

#: Longest mission the space holds (the suite's missions stay under 64 characters).
MISSION_MAX_LENGTH = 256
#: Characters a mission may use (the suite's missions use lowercase letters and spaces).
MISSION_CHARSET = string.ascii_letters + string.digits + " ,.'-"


class MissionText(spaces.Text):
    """``Text`` whose batch in shared memory is read when it is looked at (see the module)."""


def mission_space() -> MissionText:
    """A fresh ``mission`` space (each environment seeds its own spaces).

    Example:
        >>> mission_space().contains("put the red box next to the grey ball")
        True
    """
    return MissionText(max_length=MISSION_MAX_LENGTH, min_length=1, charset=MISSION_CHARSET)


class SharedMissions(Sequence[str]):
    """The missions of ``n`` sub-environments, decoded from the shared buffer on every read.

    A deep copy (what ``AsyncVectorEnv`` returns by default) is a plain tuple of strings.
    """

    def __init__(self, space: spaces.Text, shared_memory: Any, n: int):
        self._characters = space.character_list
        self._codes = np.frombuffer(shared_memory.get_obj(), dtype=np.int32).reshape(
            n, space.max_length
        )

    def _decode(self, codes: np.ndarray) -> str:
        end = len(self._characters)
        return "".join(self._characters[c] for c in codes.tolist() if c < end)

    def __len__(self) -> int:
        return len(self._codes)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return tuple(self._decode(row) for row in self._codes[index])
        return self._decode(self._codes[index])

    def __iter__(self) -> Iterator[str]:
        return (self._decode(row) for row in self._codes)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and tuple(self) == tuple(other)

    __hash__ = None  # type: ignore[assignment]  (it changes with the buffer)

    def __repr__(self) -> str:
        return repr(tuple(self))

    def __deepcopy__(self, memo: dict) -> tuple[str, ...]:
        return tuple(self)


@read_from_shared_memory.register(MissionText)
def _read_missions(space: MissionText, shared_memory: Any, n: int = 1) -> SharedMissions:
    return SharedMissions(space, shared_memory, n)
