"""The text track: the same levels and contexts as text, for language models.

- :mod:`~trajbench.text.format`: :class:`TextFormat`, how steps, segments and prompts read;
- :mod:`~trajbench.text.contexts`: :class:`TextContextBuilder`, the prompt builder's sequences
  as text (:class:`TextRow`).

The language-model policy that acts on these prompts is :mod:`trajbench.llm`.
"""

from .contexts import TextContextBuilder, TextRow, render_row
from .format import SEGMENT, TextFormat, reward_text

__all__ = ["SEGMENT", "TextContextBuilder", "TextFormat", "TextRow", "render_row", "reward_text"]
