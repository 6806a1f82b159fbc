"""Which entries are compared, and in what order: the leaderboard's tables.

A table holds the entries of one suite version on one (held-out split, family) that were
evaluated on **one level set** (the same levels of that family); entries on another level set get
a table of their own, whose title names the level set by a short hash. Within a table, entries
rank by success IQM with same-level support at the largest k that every entry evaluated.

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

from trajbench.suite import SUITE_VERSIONS

from .schema import Aggregate, Submission, agg_key

SPLIT_TITLES = {"test_levels": "held-out levels", "test_families": "held-out family"}


@dataclass
class Row:
    """One entry in one table: its aggregate at the table's k, with and without support."""

    sub: Submission
    same: Aggregate | None
    other: Aggregate | None
    rank: int = 0


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


def tables(subs: Iterable[Submission]) -> list[Table]:
    """The leaderboard's tables: the newest suite version's first, then archived versions.

    Per (suite version, held-out split, family), entries are grouped by the levels of their
    same-support records there; each group is one table, ranked at the largest k with same-level
    support that every entry of the table evaluated (the largest k of any entry if they share
    none; entries without it are listed unranked). Entries rank by success IQM, then CI low end,
    then name; equal IQM and CI share a rank.
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
    subs: list[Submission], version: str, split: str, fam: str, archived: bool
) -> list[Table]:
    """The tables of one (suite version, split, family): one per level set."""
    # level set -> [(entry, its aggregates by key, the k it evaluated with same-level support)]
    groups: dict[tuple[int, ...], list[tuple[Submission, dict, set[int]]]] = {}
    for sub in sorted(subs, key=lambda s: s.name):
        index = {agg_key(a): a for a in sub.aggregates}
        ks = {k for f, e, k, sup in index if (f, e, sup) == (fam, split, "same")}
        if not ks:
            continue
        mine = (
            r for r in sub.records if (r.family, r.eval_split, r.support) == (fam, split, "same")
        )
        groups.setdefault(tuple(sorted({r.level for r in mine})), []).append((sub, index, ks))
    out = []
    # the level set most entries share first
    for levels in sorted(groups, key=lambda ls: (-len(groups[ls]), level_set_id(fam, ls))):
        members = groups[levels]
        common = set.intersection(*(ks for _, _, ks in members))
        k = max(common) if common else max(set.union(*(ks for _, _, ks in members)))
        table = Table(version, split, fam, k, levels, tagged=len(groups) > 1, archived=archived)
        for sub, index, _ in members:
            same, other = index.get((fam, split, k, "same")), index.get((fam, split, k, "other"))
            table.rows.append(Row(sub, same, other))
        if not archived:
            _rank(table)
        out.append(table)
    return out


def _rank(table: Table) -> None:
    """Sort the rows and number them; equal IQM and CI low end share a rank."""
    table.rows.sort(key=_rank_key)
    ranked = table.ranked
    for i, row in enumerate(ranked):
        tie = i > 0 and _rank_key(ranked[i - 1])[:2] == _rank_key(row)[:2]
        row.rank = ranked[i - 1].rank if tie else i + 1


def _rank_key(row: Row) -> tuple:
    if row.same is None:
        return (1.0, 1.0, row.sub.name)  # unranked, after every ranked row
    return (-row.same.success_iqm, -row.same.success_ci_low, row.sub.name)
