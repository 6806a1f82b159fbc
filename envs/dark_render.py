"""Drawing the dark families (numpy only): the grid, the agent and, on request, what is hidden.

The agent of a dark family sees only its position; a person watching an episode wants to see the
goal it is looking for too. ``render_mode="rgb_array"`` draws the grid and the agent, and the
constructor argument ``render_hidden=True`` adds what the level hides: the goal of Dark Room, the
key and door of Dark Key-to-Door, the numbered waypoints of Dark Sequence (grey once visited).
The families draw ``"rgb_array"`` frames only (for GIFs, ``trajbench render`` and notebooks);
``gym.make(..., render_mode="human")`` shows the same frames in a pygame window through
Gymnasium's own ``HumanRendering`` wrapper (pygame comes with MiniGrid).

Example:
    >>> import gymnasium as gym, trajbench
    >>> env = gym.make("trajbench/DarkRoom-v0", render_mode="rgb_array", render_hidden=True)
    >>> _ = env.reset(seed=0, options={"level": 40})
    >>> env.render().shape
    (288, 288, 3)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

#: Side of one grid cell in pixels.
CELL_PX = 32
BACKGROUND = (22, 22, 30)
GRID_LINE = (58, 58, 74)
AGENT = (232, 64, 52)
GOAL = (64, 196, 96)
KEY = (240, 200, 40)
DOOR = (156, 98, 48)
WAYPOINT = (80, 140, 240)
VISITED = (84, 84, 100)
LABEL = (250, 250, 250)

# 3x5 bitmaps of the digits 0-9 (rows top to bottom, 3 bits each), for waypoint numbers.
_DIGITS = (
    "111101101101111",
    "010110010010111",
    "111001111100111",
    "111001111001111",
    "101101111001001",
    "111100111001111",
    "111100111101111",
    "111001010010010",
    "111101111101111",
    "111101111001111",
)


class Mark(NamedTuple):
    """Something drawn in one cell: a filled square (``inset`` pixels from the cell's edge),
    optionally with a one-digit ``label``."""

    cell: tuple[int, int]
    color: tuple[int, int, int]
    inset: int = 3
    label: int | None = None


def _digit(canvas: np.ndarray, x0: int, y0: int, digit: int, scale: int) -> None:
    bits = np.array([int(b) for b in _DIGITS[digit]], dtype=bool).reshape(5, 3)
    block = np.kron(bits, np.ones((scale, scale), dtype=bool))
    h, w = block.shape
    canvas[y0 : y0 + h, x0 : x0 + w][block] = LABEL


def draw_grid(
    size: int,
    agent: Sequence[int],
    marks: Sequence[Mark] = (),
    carrying: tuple[int, int, int] | None = None,
    cell_px: int = CELL_PX,
) -> np.ndarray:
    """An ``[size * cell_px, size * cell_px, 3]`` uint8 frame of a dark grid.

    Args:
        size: Grid side in cells.
        agent: The agent's ``(x, y)`` cell, drawn as a disc over the marks.
        marks: Hidden things to show, drawn in order.
        carrying: Colour of what the agent carries (a dot on the disc), or None.
        cell_px: Side of a cell in pixels.

    Example:
        >>> frame = draw_grid(3, (0, 0), [Mark((2, 2), GOAL)], cell_px=8)
        >>> frame.shape, tuple(frame[20, 20]) == GOAL, tuple(frame[4, 4]) == AGENT
        ((24, 24, 3), True, True)
    """
    side = size * cell_px
    canvas = np.empty((side, side, 3), dtype=np.uint8)
    canvas[:] = BACKGROUND
    canvas[::cell_px, :] = GRID_LINE
    canvas[:, ::cell_px] = GRID_LINE
    canvas[-1, :] = GRID_LINE
    canvas[:, -1] = GRID_LINE
    for mark in marks:
        x0, y0 = mark.cell[0] * cell_px, mark.cell[1] * cell_px
        lo, hi = mark.inset, cell_px - mark.inset
        canvas[y0 + lo : y0 + hi, x0 + lo : x0 + hi] = mark.color
        if mark.label is not None:
            scale = max(1, cell_px // 8)
            _digit(
                canvas,
                x0 + (cell_px - 3 * scale) // 2,
                y0 + (cell_px - 5 * scale) // 2,
                mark.label % 10,
                scale,
            )
    yy, xx = np.mgrid[0:cell_px, 0:cell_px] + 0.5
    r = (yy - cell_px / 2) ** 2 + (xx - cell_px / 2) ** 2
    x0, y0 = int(agent[0]) * cell_px, int(agent[1]) * cell_px
    view = canvas[y0 : y0 + cell_px, x0 : x0 + cell_px]
    view[r <= (0.38 * cell_px) ** 2] = AGENT
    if carrying is not None:
        view[r <= (0.15 * cell_px) ** 2] = carrying
    return canvas


class DarkRender(ABC):
    """``render()`` for a dark family: mix in first and call :meth:`_init_render` in ``__init__``.

    The family provides ``size``, ``pos`` and :meth:`_hidden_marks` (and :meth:`_carrying`).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}
    render_mode: str | None = None
    #: Whether frames show what the level hides (the goal, key, door or waypoints).
    render_hidden: bool = False
    size: int
    pos: np.ndarray

    def _init_render(self, render_mode: str | None, render_hidden: bool) -> None:
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.render_mode = render_mode
        self.render_hidden = bool(render_hidden)

    def render(self) -> np.ndarray | None:
        """The current frame (``render_mode="rgb_array"``), else None."""
        if self.render_mode != "rgb_array":
            return None
        marks = self._hidden_marks() if self.render_hidden else []
        return draw_grid(self.size, self.pos, marks, self._carrying())

    @abstractmethod
    def _hidden_marks(self) -> list[Mark]:
        """What the level hides from the agent, as marks to draw."""

    def _carrying(self) -> tuple[int, int, int] | None:
        return None
