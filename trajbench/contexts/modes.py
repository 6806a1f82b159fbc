"""The context modes: one registry that the builder, presets, reports and the CLI read.

A mode is a cell of the benchmark's factorial: where the context's steps come from (``support``:
the query's own level, other levels of its family, or nothing) and whether they keep whole
episodes in order (``ordered``) or are single transitions in random order. The prompt builder
reads only these two properties, so adding a mode is one entry here plus its tests.

Example:
    >>> MODES["shuffled"].support, MODES["shuffled"].ordered
    ('same', False)
    >>> MODE_NAMES
    ('bursty', 'trajectories', 'shuffled', 'isolated', 'none')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..errors import TrajbenchError

Support = Literal["same", "other", "none"]


@dataclass(frozen=True)
class ContextMode:
    """One way of filling a training sequence's context.

    Attributes:
        name: The mode's name, as on the command line (``--context.mode``).
        support: ``same``: other episodes of the query's own level; ``other``: episodes of other
            levels of the query's family; ``none``: no context at all.
        ordered: Whole episodes with their steps in order (True), or single transitions in a
            random order (False).
        description: One line for ``--help``, reports and the docs.
    """

    name: str
    support: Support
    ordered: bool
    description: str

    @property
    def has_context(self) -> bool:
        """Whether the mode shows a context at all."""
        return self.support != "none"


#: The modes' names: write these, never the literals (tests/test_architecture.py checks).
BURSTY, TRAJECTORIES, SHUFFLED, ISOLATED, NONE = (
    "bursty",
    "trajectories",
    "shuffled",
    "isolated",
    "none",
)
MODES: dict[str, ContextMode] = {
    mode.name: mode
    for mode in (
        ContextMode(BURSTY, "same", True, "other episodes of the query's own level, in order"),
        ContextMode(
            TRAJECTORIES, "other", True, "episodes of other levels of the family, in order"
        ),
        ContextMode(SHUFFLED, "same", False, "the same steps as bursty, in random order"),
        ContextMode(ISOLATED, "other", False, "transitions of other levels, in random order"),
        ContextMode(NONE, "none", True, "no context"),
    )
}
#: Mode names in the registry's (and every report's) order.
MODE_NAMES: tuple[str, ...] = tuple(MODES)
#: Modes whose context shows demonstrations of the query's own level.
SAME_LEVEL_MODES: tuple[str, ...] = tuple(m.name for m in MODES.values() if m.support == "same")


def get_mode(name: str) -> ContextMode:
    """The registered mode called ``name``.

    Raises:
        TrajbenchError: no mode of that name (the message lists the known ones).
    """
    try:
        return MODES[name]
    except KeyError:
        raise TrajbenchError(
            f"unknown context mode {name!r}; expected one of {MODE_NAMES}"
        ) from None


def ordered_mode(support: Support) -> ContextMode:
    """The registered mode that shows whole episodes in order with that support: ``bursty``
    (same), ``trajectories`` (other) or ``none``."""
    return next(m for m in MODES.values() if m.support == support and m.ordered)


def counterpart(mode: ContextMode, support: Support) -> ContextMode:
    """The registered mode with ``mode``'s structure and the given support.

    ``p_bursty`` mixes a mode with its counterpart: ``bursty`` <-> ``trajectories``.
    """
    for other in MODES.values():
        if other.support == support and other.ordered == mode.ordered:
            return other
    raise TrajbenchError(f"no registered mode is {mode.name!r} with {support}-level support")
