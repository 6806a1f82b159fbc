"""Tests for trajbench.leaderboard.ranking: who shares a table, at which k, in which order."""

from test_leaderboard_fixtures import (
    DARK_ROOM,
    KEY_DOOR,
    add_suite_version,
    edit,
    entry_path,
    held_out,
    relabel_levels,
)

from trajbench.leaderboard import load, submission_files, tables, validate_files
from trajbench.leaderboard.ranking import level_set_id, newest_version

pytest_plugins = ["test_leaderboard_fixtures"]
BURSTY, ISOLATED = "ci-transformer-bursty-full-p1", "ci-transformer-isolated-full-p0"


def test_ranking_uses_the_largest_k_every_entry_shares(root):
    subs = [load(p)[0] for p in submission_files(root)]
    # drop k = 4 from the random entry: the table falls back to k = 1 for everyone
    random = subs[0]
    assert random.name == "ci-random"
    kept = [a for a in random.aggregates if a.k != 4]
    subs[0] = random.model_copy(update={"aggregates": kept})
    first = tables(subs)[0]
    assert (first.family, first.eval_split, first.k) == (DARK_ROOM, "test_levels", 1)
    assert {r.same.k for r in first.rows} == {1}
    # at k = 1 isolated and random tie on IQM and CI: they share a rank
    assert [r.rank for r in first.rows] == [1, 2, 2]
    tied = [(r.same.success_iqm, r.same.success_ci_low) for r in first.rows[1:]]
    assert tied[0] == tied[1]
    assert first.rows[0].same.success_iqm > tied[0][0]


def test_entries_on_different_level_sets_are_never_ranked_together(root):
    edit(entry_path(root, "ci-random"), relabel_levels(DARK_ROOM))
    subs, problems = validate_files(submission_files(root))
    assert problems == [] and len(subs) == 3
    boards = tables(subs)
    dark = [t for t in boards if t.family == DARK_ROOM]
    assert [[r.sub.name for r in t.rows] for t in dark] == [[BURSTY, ISOLATED], ["ci-random"]]
    assert [[r.rank for r in t.rows] for t in dark] == [[1, 2], [1]]
    assert [t.levels for t in dark] == [held_out(DARK_ROOM)[:4], held_out(DARK_ROOM)[4:8]]
    ids = [level_set_id(DARK_ROOM, t.levels) for t in dark]
    assert ids[0] != ids[1]
    for table, set_id in zip(dark, ids, strict=True):
        assert table.title.endswith(f", level set {set_id} (4 levels)")
    # the other family's levels are shared: one table, titled as before
    (key_door,) = [t for t in boards if t.family == KEY_DOOR]
    assert len(key_door.rows) == 3 and "level set" not in key_door.title


def test_a_newer_suite_version_archives_the_older_entries(root, monkeypatch):
    subs = [load(p)[0] for p in submission_files(root)]
    add_suite_version(monkeypatch, "2")
    assert newest_version() == "2"
    boards = tables(subs)
    assert len(boards) == 2 and all(t.archived and t.ranked == [] for t in boards)
    for table in boards:
        assert [r.sub.name for r in table.rows] == sorted(s.name for s in subs)
        assert {r.rank for r in table.rows} == {0}
    # an entry of the newest version is ranked, and its tables come before the archive
    current = subs[1].model_copy(update={"name": "current", "suite_version": "2"})
    boards = tables([*subs, current])
    assert [(t.suite_version, t.archived) for t in boards] == [("2", False)] * 2 + [("1", True)] * 2
    assert [[(r.sub.name, r.rank) for r in t.rows] for t in boards[:2]] == [[("current", 1)]] * 2
