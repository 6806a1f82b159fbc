"""Text contexts: the prompt builder's sequences, written as text.

The text track does not sample on its own: :class:`TextContextBuilder` asks the token track's
:class:`~trajbench.contexts.ContextBuilder` for a batch and writes each row in the text format
(:mod:`trajbench.text.format`). So every mode and knob (``k``, ``p_bursty``, ``partial``,
``context_steps``, ``zipf``, the demonstrator filters, the instruction) means on the text track
exactly what it means on the token track: the same segments, the same steps in the same order
(``shuffled`` is ``bursty``'s steps permuted), the same query and the same mission shown. Each
``<bos>`` becomes ``Episode:``, each context step a transition line, the query's mission words a
``Mission:`` line (none when no word is shown), and each query step a prompt whose action is a
target.

Example:
    >>> rows = TextContextBuilder(store, mode="shuffled", k=2).sample(4, seed=0)  # doctest: +SKIP
    >>> print(rows[0].text)                                                      # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..batch import WORD, Batch
from ..contexts import ContextBuilder, ContextConfig
from ..vocab import MissionVocab
from .format import SEGMENT, TextFormat


@dataclass
class TextRow:
    """One sequence as text: pieces in order, the query's actions among them as targets.

    Attributes:
        pieces: The text, cut so that every target is a piece of its own.
        targets: Indices in ``pieces`` of the query's actions (what a model is scored on).
        actions: The action id of each target.
    """

    pieces: list[str] = field(default_factory=list)
    targets: list[int] = field(default_factory=list)
    actions: list[int] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def spans(self) -> list[tuple[int, int]]:
        """Character ``[start, end)`` of every target in :attr:`text`."""
        starts = np.cumsum([0, *(len(p) for p in self.pieces)])
        return [(int(starts[i]), int(starts[i + 1])) for i in self.targets]


def render_row(batch: Batch, row: int, vocab: MissionVocab, fmt: TextFormat) -> TextRow:
    """Row ``row`` of a prompt-builder batch as text (see the module docstring)."""
    out = TextRow([fmt.header()])
    words: list[str] = []
    first_query_step = True
    for j in np.flatnonzero(batch.kind[row] != 0):
        query = bool(batch.is_query[row, j])
        if batch.kind[row, j] == WORD:
            word = int(batch.word[row, j])
            if word != vocab.bos_id:
                words.append(vocab.itos[word])
            elif not query:
                out.pieces.append(SEGMENT)
            continue
        obs = batch.obs[row, j]
        if not query:
            out.pieces.append(
                fmt.step_line(obs, batch.shown_action[row, j], batch.shown_reward[row, j])
            )
            continue
        if first_query_step:
            out.pieces.append(fmt.query_start(" ".join(words)))
            first_query_step = False
        else:
            out.pieces.append(fmt.reward(batch.prev_reward[row, j]))
        out.pieces.append(fmt.prompt(obs))
        action = int(batch.target[row, j])
        out.targets.append(len(out.pieces))
        out.actions.append(action)
        out.pieces.append(fmt.action(action))
    return out


class TextContextBuilder:
    """The prompt builder's sequences as :class:`TextRow` s.

    Args:
        store: An episode store (``trajbench.data.load``).
        seed: The prompt builder's seed.
        vocab: Mission vocabulary (built from the store's missions if None).
        levels: Restrict query levels to these.
        config: A :class:`~trajbench.contexts.ContextConfig`; keyword knobs override it.
        text_format: How observations and actions read (default: the store encoding's family).

    Raises:
        TrajbenchError: a bad knob or a store that serves no query (the prompt builder's checks).
        KeyError: no registered family reads the store's encoding and no ``text_format`` given.
    """

    def __init__(
        self,
        store,
        seed: int = 0,
        vocab: MissionVocab | None = None,
        levels=None,
        config: ContextConfig | None = None,
        text_format: TextFormat | None = None,
        **knobs,
    ):
        self.builder = ContextBuilder(
            store, seed=seed, vocab=vocab, levels=levels, config=config, **knobs
        )
        self.format = text_format or TextFormat.of(store.encoding)

    def sample(self, batch_size: int, seed: int | None = None) -> list[TextRow]:
        """``batch_size`` rows: the prompt builder's ``sample(batch_size, seed=seed)``, as text."""
        batch = self.builder.sample(batch_size, seed=seed)
        return [render_row(batch, r, self.builder.vocab, self.format) for r in range(batch_size)]
