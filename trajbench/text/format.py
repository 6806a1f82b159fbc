"""How the text track writes a context and an episode: one line per step, one header per segment.

The text track shows a language model what the token track shows a sequence model, in words
(``docs/text-track.md``). A prompt reads::

    Actions: stay, up, down, left, right.
    Episode:
    at (3, 4): right, reward 0
    at (4, 4): right, reward 1
    Episode:
    Mission: go to the red ball
    at (1, 1): right, reward 0
    at (2, 1):

- a header naming the actions (the same for every mode);
- ``Episode:`` before each context segment and before the query: the token track's ``<bos>``,
  whatever the segment holds (whole episodes, or transitions in random order);
- a context step is one transition: its observation, its action and the reward that followed;
- the query starts with its mission line (none when the mission shown is empty) and then its
  steps, each closed by its reward when the next observation comes; the model's action is the
  text after the last ``:``.

Observation and action words come from the family of the encoding
(:func:`trajbench.envs.encoding_family`: ``obs_text`` and ``action_words``).

Example:
    >>> from trajbench.envs.dark_grid import DarkGridEnv
    >>> fmt = TextFormat(DarkGridEnv.obs_text, DarkGridEnv.action_words)
    >>> fmt.step_line(np.array([3, 4]), 4, 0.0)
    'at (3, 4): right, reward 0\\n'
    >>> fmt.prompt(np.array([3, 4])) + fmt.action(4) + fmt.reward(0.5)
    'at (3, 4): right, reward 0.5\\n'
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..envs import ObsEncoding, encoding_family

#: What starts every segment (context or query): the token track's ``<bos>``.
SEGMENT = "Episode:\n"


def reward_text(reward: float) -> str:
    """A reward in at most two decimals, without trailing zeros: ``0``, ``1``, ``0.95``."""
    text = f"{float(reward):.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


@dataclass(frozen=True)
class TextFormat:
    """The words of one observation encoding: how its observations and actions read.

    Attributes:
        obs_text: Encoded observation -> text (the family's ``obs_text``).
        action_words: Every action in words, by action id.
    """

    obs_text: Callable[[np.ndarray], str]
    action_words: tuple[str, ...]

    @classmethod
    def of(cls, encoding: ObsEncoding) -> TextFormat:
        """The format of the registered families that use ``encoding``.

        Raises:
            KeyError: no registered family uses that encoding.
        """
        family = encoding_family(encoding.name)
        return cls(family.obs_text, tuple(family.action_words))

    def header(self) -> str:
        """The first line of every prompt: the actions, in id order."""
        return f"Actions: {', '.join(self.action_words)}.\n"

    def prompt(self, obs: np.ndarray) -> str:
        """An observation awaiting its action: ``at (3, 4):``."""
        return f"{self.obs_text(obs)}:"

    def action(self, action: int) -> str:
        """The text the model scores (and writes) after :meth:`prompt`: `` right``."""
        return f" {self.action_words[int(action)]}"

    def reward(self, reward: float) -> str:
        """What closes a step's line once its reward is known: ``, reward 1`` and a newline."""
        return f", reward {reward_text(reward)}\n"

    def step_line(self, obs: np.ndarray, action: int, reward: float) -> str:
        """One whole transition, as a context shows it."""
        return self.prompt(obs) + self.action(action) + self.reward(reward)

    def segment(self, obs: Sequence, actions: Sequence, rewards: Sequence) -> str:
        """A context segment: the delimiter and one line per transition."""
        lines = (self.step_line(o, a, r) for o, a, r in zip(obs, actions, rewards, strict=True))
        return SEGMENT + "".join(lines)

    def context(self, segments: Sequence, mission: str) -> str:
        """A whole prompt up to the query's first step: the header, every context segment
        (anything with ``obs``, ``actions`` and ``rewards``, in order) and the query's start."""
        body = "".join(self.segment(s.obs, s.actions, s.rewards) for s in segments)
        return self.header() + body + self.query_start(mission)

    def query_start(self, mission: str) -> str:
        """The query's delimiter and its mission line (none for an empty mission)."""
        return SEGMENT + (f"Mission: {mission}\n" if mission else "")
