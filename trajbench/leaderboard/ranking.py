"""Which entries are compared, and in what order: the leaderboard's tables.

A table holds the entries of one suite version on one (held-out split, family) that were
evaluated on **one level set** (the same levels of that family); entries on another level set get
a table of their own, whose title names the level set by a short hash. Within a table, entries
rank by mean success in the common format (whole demonstrations in order) with same-level
support and the mission they trained with, at the largest k that every entry evaluated. Beside
it a row shows the no-support score and, for a model trained on an unordered mode, its score in
its own (matched) format, which is shown but not ranked.

The copy baselines (``hashmap``, ``replay``) and the in-context ``decoder`` are rows of the table
they were evaluated in, marked: the copy baselines are the floor to clear, the decoder the bar
(:mod:`trajbench.baselines.decoder`). Where a table holds ``random`` and ``decoder`` entries, every
entry's success is also shown normalized, (success - random) / (decoder - random). A table whose
best entry other than the reference policies reaches 0.95 on the decoder scale (the expert's scale
where the table has no decoder) is *saturated at this preset*
(:func:`trajbench.report.tables.saturated`).

Only the newest suite version of ``SUITE_VERSIONS`` is ranked: entries of older versions are
archived, listed in tables of their own without ranks (sorted by name).

Example:
    >>> tables([])
    []
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

import pandas as pd

from trajbench.records import (
    BAR,
    COMMON,
    COPY_BASELINES,
    MATCHED,
    RANDOM,
    TEST_FAMILIES,
    TEST_LEVELS,
)
from trajbench.report.tables import saturated
from trajbench.suite import SUITE_VERSIONS

from .schema import SCHEMA_VERSION, Aggregate, AggregateV1, Entry, schema_of

SPLIT_TITLES = {TEST_LEVELS: "held-out levels", TEST_FAMILIES: "held-out family"}
#: (support, format) of the ranked score, the no-support score and the matched-format score.
SAME, OTHER, MATCHED = ("same", COMMON), ("other", COMMON), ("same", MATCHED)


@dataclass
class Row:
    """One entry in one table: its aggregates at the table's k."""

    sub: Entry
    same: Aggregate | AggregateV1 | None
    """Same-level support, common format: what the table ranks."""
    other: Aggregate | AggregateV1 | None
    """Demonstrations of other levels (no support)."""
    matched: Aggregate | None = None
    """Same-level support in the entry's own format (models trained on an unordered mode)."""
    rank: int = 0

    @property
    def copy_baseline(self) -> bool:
        """A copy baseline: the bar a model must clear."""
        return self.sub.model.policy in COPY_BASELINES

    @property
    def bar(self) -> bool:
        """The in-context decoder: the bar, 1 on the normalized scale."""
        return self.sub.model.policy == BAR


@dataclass
class Table:
    """Entries of one suite version on one (held-out split, family) and level set, ranked at k."""

    suite_version: str
    eval_split: str
    family: str
    k: int
    levels: tuple[int, ...]
    """The levels every entry of the table was evaluated on."""
    tagged: bool = False
    """Whether other tables of this (suite version, split, family) use other level sets."""
    archived: bool = False
    """An older suite version: its entries are listed, not ranked."""
    rows: list[Row] = field(default_factory=list)

    @property
    def title(self) -> str:
        title = f"{self.family} — {SPLIT_TITLES[self.eval_split]} (k = {self.k})"
        if self.tagged:
            title += f", level set {level_set_id(self.family, self.levels)}"
            title += f" ({len(self.levels)} levels)"
        return title

    @property
    def ranked(self) -> list[Row]:
        return [] if self.archived else [r for r in self.rows if r.same is not None]

    @property
    def schema(self) -> int:
        """The schema version of the table's entries (that of its suite version)."""
        return schema_of(self.suite_version)

    @property
    def statistic(self) -> str:
        """What the success column holds: "mean", or "IQM" for suite-version-1 entries."""
        return (Aggregate if self.schema == SCHEMA_VERSION else AggregateV1).STATISTIC

    @property
    def saturated(self) -> bool:
        """Whether the best entry other than the references reaches 0.95 of the decoder scale
        (:func:`trajbench.report.tables.saturated`)."""
        rows = self.ranked
        if not rows:
            return False
        frame = pd.DataFrame(
            {
                "policy": [r.sub.model.policy for r in rows],
                "success_mean": [r.same.success for r in rows],
            }
        )
        return saturated(frame)

    def normalized(self, row: Row) -> float | None:
        """``row``'s success as (success - random) / (decoder - random), from the table's own
        ``random`` and ``decoder`` entries; None without them or when the decoder is not above
        random."""
        refs = {
            r.sub.model.policy: r.same.success
            for r in self.ranked
            if r.sub.model.policy in (RANDOM, BAR)
        }
        if row.same is None or len(refs) < 2 or refs[BAR] <= refs[RANDOM]:
            return None
        return (row.same.success - refs[RANDOM]) / (refs[BAR] - refs[RANDOM])

    @property
    def presets(self) -> list[str]:
        """The presets the ranked entries were run with."""
        return sorted({r.sub.preset for r in self.ranked if r.sub.preset})


def level_set_id(family: str, levels: Iterable[int]) -> str:
    """A short, stable hash of a set of (family, level).

    Example:
        >>> level_set_id("f", [3, 1]) == level_set_id("f", [1, 3]) != level_set_id("f", [1])
        True
    """
    text = "\n".join(f"{family}:{level}" for level in sorted(set(levels)))
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def version_key(version: str) -> tuple:
    """Sort key of a suite version: ``"10"`` after ``"9"``."""
    return tuple(int(p) if p.isdigit() else p for p in version.split("."))


def newest_version() -> str:
    """The suite version that is ranked; entries of every other version are archived."""
    return max(SUITE_VERSIONS, key=version_key)


def tables(subs: Iterable[Entry]) -> list[Table]:
    """The leaderboard's tables: the newest suite version's first, then archived versions.

    Per (suite version, held-out split, family), entries are grouped by the levels of their
    ranked records there (same-level support, common format, their training mission); each
    group is one table, ranked at the largest such k that every entry of the table evaluated
    (the largest k of any entry if they share none; entries without it are listed unranked).
    Entries rank by success (mean; IQM in suite version 1), then CI low end, then name; equal
    success and CI share a rank.
    """
    by_name = {s.name: s for s in subs}
    newest = newest_version()
    versions = sorted({s.suite_version for s in by_name.values()}, key=version_key, reverse=True)
    out = []
    for version in sorted(versions, key=lambda v: v != newest):  # stable: newest, then the rest
        mine = [s for s in by_name.values() if s.suite_version == version]
        for split in SPLIT_TITLES:
            for fam in SUITE_VERSIONS[version]["families"]:
                out += _family_tables(mine, version, split, fam, archived=version != newest)
    return out


def _family_tables(
    subs: list[Entry], version: str, split: str, fam: str, archived: bool
) -> list[Table]:
    """The tables of one (suite version, split, family): one per level set."""
    # level set -> [(entry, its aggregates by (k, support, format), the k it was ranked at)]
    groups: dict[tuple[int, ...], list[tuple[Entry, dict, set[int]]]] = {}
    for sub in sorted(subs, key=lambda s: s.name):
        index = {}
        for agg in sub.aggregates:
            view = sub.headline(agg)
            if view is not None and view[:2] == (fam, split):
                index[view[2:]] = agg
        ks = {k for k, *how in index if tuple(how) == SAME}
        if not ks:
            continue
        levels = {
            r.level
            for r in sub.records
            if (view := sub.headline(r)) is not None and view[:2] + view[3:] == (fam, split, *SAME)
        }
        groups.setdefault(tuple(sorted(levels)), []).append((sub, index, ks))
    out = []
    # the level set most entries share first
    for levels in sorted(groups, key=lambda ls: (-len(groups[ls]), level_set_id(fam, ls))):
        members = groups[levels]
        common = set.intersection(*(ks for _, _, ks in members))
        k = max(common) if common else max(set.union(*(ks for _, _, ks in members)))
        table = Table(version, split, fam, k, levels, tagged=len(groups) > 1, archived=archived)
        for sub, index, _ in members:
            found = [index.get((k, *how)) for how in (SAME, OTHER, MATCHED)]
            table.rows.append(Row(sub, *found))
        if not archived:
            _rank(table)
        out.append(table)
    return out


def _rank(table: Table) -> None:
    """Sort the rows and number them; equal success and CI low end share a rank."""
    table.rows.sort(key=_rank_key)
    ranked = table.ranked
    for i, row in enumerate(ranked):
        tie = i > 0 and _rank_key(ranked[i - 1])[:2] == _rank_key(row)[:2]
        row.rank = ranked[i - 1].rank if tie else i + 1


def _rank_key(row: Row) -> tuple:
    if row.same is None:
        return (1.0, 1.0, row.sub.name)  # unranked, after every ranked row
    return (-row.same.success, -row.same.success_ci_low, row.sub.name)
