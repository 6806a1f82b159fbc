"""Decoy missions and the random-guess reference of the instruction ablation (BabyAI families).

A decoy is the level's own kind of mission (go to / pick up / put next to) naming *another object
present in the level*: an object of an appearance (type and color) that no object the true mission
accepts has, so it never equals the true mission up to articles. Evaluation shows the decoy on the
query while the demonstrations go to the true goal, and records per episode whether the agent
reached the demonstrations' goal (the episode's success) or the decoy's object (the decoy's own
BabyAI verifier, run beside the environment).

Example:
    >>> import gymnasium as gym, numpy as np, trajbench
    >>> env = gym.make("trajbench/GoToLocal-v1").unwrapped
    >>> _ = env.reset(seed=0, options={"level": 7})
    >>> text = env.draw_decoy(np.random.default_rng(0))
    >>> text != env.mission and text.startswith("go to")
    True
"""

from __future__ import annotations

from typing import Any

import numpy as np
from minigrid.envs.babyai.core.verifier import GoToInstr, ObjDesc, PickupInstr, PutNextInstr

#: Object types a decoy may name (what BabyAI's local levels place).
_TYPES = ("ball", "box", "key")


def _appearance(obj: Any) -> tuple[str, str]:
    return (obj.type, obj.color)


def decoy_instruction(env: Any, rng: np.random.Generator) -> Any | None:
    """A decoy for the current level of ``env`` (its mission's verifier must be reset), or None
    when every object present looks like one the mission accepts."""
    instr = env.instrs
    present = {_appearance(o) for o in env.grid.grid if o is not None and o.type in _TYPES}
    if isinstance(instr, GoToInstr | PickupInstr):
        accepted = {_appearance(o) for o in instr.desc.obj_set}
    elif isinstance(instr, PutNextInstr):
        accepted = {_appearance(o) for o in (*instr.desc_move.obj_set, *instr.desc_fixed.obj_set)}
    else:
        return None
    candidates = sorted(present - accepted)
    if not candidates:
        return None
    kind, color = candidates[int(rng.integers(len(candidates)))]
    desc = ObjDesc(kind, color)
    if isinstance(instr, PutNextInstr):
        fixed = instr.desc_fixed
        return PutNextInstr(desc, ObjDesc(fixed.type, fixed.color, fixed.loc))
    return type(instr)(desc)


def mission_chance(env: Any) -> float:
    """How likely acting on a uniformly random object of the level (a random ordered pair of
    distinct objects for "put next to") satisfies its mission.

    Example:
        >>> import gymnasium as gym, trajbench
        >>> env = gym.make("trajbench/GoToLocal-v1").unwrapped
        >>> _ = env.reset(seed=0, options={"level": 7})
        >>> 0 < mission_chance(env) <= 1
        True
    """
    objs = [o for o in env.grid.grid if o is not None and o.type in _TYPES]
    instr = env.instrs

    def matching(desc: Any) -> set[int]:
        return set(map(id, ObjDesc(desc.type, desc.color, desc.loc).find_matching_objs(env)[0]))

    if isinstance(instr, PutNextInstr):
        move, fixed = matching(instr.desc_move), matching(instr.desc_fixed)
        pairs = sum(id(a) in move and id(b) in fixed for a in objs for b in objs if a is not b)
        return pairs / (len(objs) * (len(objs) - 1))
    if isinstance(instr, GoToInstr | PickupInstr):
        return len(matching(instr.desc)) / len(objs)
    raise ValueError(f"{type(instr).__name__} missions have no random-guess reference")


class DecoyTracker:
    """Keeps a decoy's verifier in step with one BabyAI environment, level after level.

    The decoy belongs to a level: it is rebuilt against the fresh objects of every episode of that
    level and dropped when the environment moves to another level.
    """

    def __init__(self) -> None:
        self.level: int | None = None
        self.instr: Any = None
        self.reached = False

    def draw(self, env: Any, rng: np.random.Generator) -> str | None:
        """Draw a decoy for ``env``'s current level and episode; its mission text, or None."""
        instr = decoy_instruction(env, rng)
        self.level = env.level if instr is not None else None
        self.instr, self.reached = instr, False
        if instr is None:
            return None
        instr.reset_verifier(env)
        return instr.surface(env)

    def reset(self, env: Any) -> None:
        """A new episode of ``env``: rebuild the decoy's verifier, or drop it for another level."""
        self.reached = False
        if self.instr is None:
            return
        if env.level != self.level:
            self.level, self.instr = None, None
            return
        fresh = _fresh(self.instr)
        fresh.reset_verifier(env)
        self.instr = fresh

    def step(self, action: int) -> bool | None:
        """After the environment executed ``action``: whether the decoy's object has been
        reached in this episode (None without a decoy)."""
        if self.instr is None:
            return None
        self.reached = self.reached or self.instr.verify(action) == "success"
        return self.reached


def _fresh(instr: Any) -> Any:
    """The same instruction with fresh descriptions (verifiers bind to an episode's objects)."""
    if isinstance(instr, PutNextInstr):
        move, fixed = instr.desc_move, instr.desc_fixed
        return PutNextInstr(
            ObjDesc(move.type, move.color, move.loc), ObjDesc(fixed.type, fixed.color, fixed.loc)
        )
    return type(instr)(ObjDesc(instr.desc.type, instr.desc.color, instr.desc.loc))
