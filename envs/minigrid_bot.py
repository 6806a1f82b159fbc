"""The BabyAI bot as a closed-loop expert that any actual action can interrupt.

``minigrid.utils.baby_ai_bot.BabyAIBot`` is stateful: after every executed action it must be told
that action (``replan(action_taken)``) to update its map and plan, and it then suggests the next
action. :class:`BotTracker` keeps one bot per episode in step with the environment without
running the bot inside ``step``:

- ``step`` only records the executed action (:meth:`BotTracker.note`);
- :meth:`BotTracker.action` (the family's ``expert_action``) feeds the bot the pending action and
  caches its suggestion. When two actions are executed with no expert call in between (a noisy
  demonstrator's random actions), ``note`` feeds the earlier one before the next action changes
  the state, so the bot always sees every state.
- A bot first consulted after some actions were taken replays the episode from its start on the
  same level (generation is deterministic), so it ends in exactly the state it would have reached.

The bot is never consulted when nobody asks for expert actions, so random rollouts pay nothing.

Example:
    >>> import gymnasium as gym, trajbench
    >>> env = gym.make("trajbench/GoToLocal-v0")
    >>> _ = env.reset(seed=0, options={"level": 3})
    >>> _ = env.step(0)  # any action, e.g. a random one
    >>> env.unwrapped.expert_action() in range(7)
    True
"""

from __future__ import annotations

from typing import Any

from minigrid.core.actions import Actions
from minigrid.utils.baby_ai_bot import BabyAIBot

#: What the expert returns once the bot cannot act (e.g. a random ``toggle`` opened the box the
#: mission names): ``done``, a no-op in these levels.
FALLBACK_ACTION = int(Actions.done)


class QuietBot(BabyAIBot):
    """BabyAIBot that carries on after a box is opened instead of raising.

    The stock bot aborts on any opened box. In these levels an opened distractor box changes
    nothing the bot needs; a mission whose own box was opened (only a random action does that)
    cannot be completed any more, and the episode fails whatever the bot suggests.
    """

    def _check_erroneous_box_opening(self, action: Any) -> None:
        return None


class BotTracker:
    """Keeps a :class:`QuietBot` in step with one episode of a BabyAI environment.

    Created by the environment at every ``reset``.

    Args:
        env: The unwrapped BabyAI environment; must provide ``_restart_level()``, which rebuilds
            the current level in its initial state, and ``_base_step(action)``, which executes an
            action with no sticky actions and no recording.
    """

    def __init__(self, env: Any):
        self.env = env
        self.bot = QuietBot(env)
        self.taken: list[int] = []
        self.live = False
        self.stale = False
        self.suggestion = FALLBACK_ACTION
        self.failed = False

    def note(self, action: int) -> None:
        """Record an executed action; called by ``step`` before the action is applied."""
        if self.stale:
            self._replan(self.taken[-1])
        self.taken.append(action)
        self.stale = self.live

    def action(self) -> int:
        """The bot's next action for the environment's current state."""
        if not self.live:
            self._start()
        elif self.stale:
            self._replan(self.taken[-1])
        return self.suggestion

    def _start(self) -> None:
        self.live = True
        self.stale = False
        if not self.taken:
            self._replan(None)
            return
        self.env._restart_level()
        self.bot = QuietBot(self.env)
        self._replan(None)
        for action in self.taken:
            self.env._base_step(action)
            self._replan(action)

    def _replan(self, action: int | None) -> None:
        self.stale = False
        if self.failed:
            return
        try:
            self.suggestion = int(self.bot.replan(action))
        except Exception:
            # The bot's own assertions fire when its plan became impossible; a fresh bot
            # planning from the current state gets one more chance.
            try:
                self.bot = QuietBot(self.env)
                self.suggestion = int(self.bot.replan(None))
            except Exception:
                self.failed = True
                self.suggestion = FALLBACK_ACTION
