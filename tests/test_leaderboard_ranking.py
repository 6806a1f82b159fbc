"""Tests for trajbench.leaderboard.ranking: who shares a table, at which k, in which order, the
copy baselines and saturation."""

from leaderboard_support import (
    BURSTY,
    DARK_ROOM,
    HASHMAP,
    ISOLATED,
    KEY_DOOR,
    RANDOM,
    V1_FILES,
    add_suite_version,
    edit,
    entry_path,
    held_out,
    relabel_levels,
)

from trajbench.leaderboard import Submission, load, submission_files, tables, validate_files
from trajbench.leaderboard.ranking import Table, level_set_id, newest_version
from trajbench.suite import SUITE_VERSION

pytest_plugins = ["leaderboard_support"]
ORDER = [BURSTY, HASHMAP, ISOLATED, RANDOM]


def _subs(root) -> list[Submission]:
    return [load(p)[0] for p in submission_files(root)]


def _with_success(sub: Submission, value: float, name: str | None = None) -> Submission:
    """``sub`` with every aggregate's mean success (and its CI) at ``value``."""
    aggs = [
        a.model_copy(update={"success_mean": value, "success_ci_low": value - 0.01})
        for a in sub.aggregates
    ]
    return sub.model_copy(update={"aggregates": aggs, "name": name or sub.name})


def test_tables_rank_by_mean_success_in_the_common_format_and_training_mission(root):
    boards = tables(_subs(root))
    assert [(t.family, t.eval_split, t.k) for t in boards] == [
        (DARK_ROOM, "test_levels", 4),
        (KEY_DOOR, "test_families", 4),
    ]
    for table in boards:
        assert [r.sub.name for r in table.rows] == ORDER and table.statistic == "mean"
        assert [r.rank for r in table.rows] == [1, 2, 3, 4]
        means = [r.same.success_mean for r in table.rows]
        assert means == sorted(means, reverse=True)
        for row in table.rows:
            assert (row.same.k, row.same.support, row.same.format) == (4, "same", "common")
            assert row.same.eval_instruction == row.sub.training.instruction
            assert (row.other.support, row.other.format) == ("other", "common")


def test_the_matched_format_is_shown_beside_the_rank_and_named(root):
    for table in tables(_subs(root)):
        rows = {r.sub.name: r for r in table.rows}
        matched = rows[ISOLATED].matched
        assert (matched.format, matched.support, matched.k) == ("matched", "same", 4)
        assert all(rows[n].matched is None for n in (BURSTY, HASHMAP, RANDOM))


def test_wrong_mission_scores_do_not_move_the_ranking(root):
    subs = _subs(root)
    before = [[r.sub.name for r in t.rows] for t in tables(subs)]
    # the random entry solves every decoy-mission episode: it is still ranked on its own mission
    random = next(s for s in subs if s.name == RANDOM)
    aggs = [
        a.model_copy(update={"success_mean": 1.0, "success_ci_low": 1.0})
        if a.eval_instruction == "decoy"
        else a
        for a in random.aggregates
    ]
    subs[subs.index(random)] = random.model_copy(update={"aggregates": aggs})
    assert [[r.sub.name for r in t.rows] for t in tables(subs)] == before


def test_ranking_uses_the_largest_k_every_entry_shares(root):
    subs = _subs(root)
    # drop k = 4 from the random entry: the table falls back to k = 1 for everyone
    random = next(s for s in subs if s.name == RANDOM)
    kept = [a for a in random.aggregates if a.k != 4]
    subs[subs.index(random)] = random.model_copy(update={"aggregates": kept})
    first = tables(subs)[0]
    assert (first.family, first.eval_split, first.k) == (DARK_ROOM, "test_levels", 1)
    assert {r.same.k for r in first.rows} == {1}


def test_equal_success_and_ci_share_a_rank(root):
    subs = _subs(root)
    bursty = next(s for s in subs if s.name == BURSTY)
    twin = bursty.model_copy(update={"name": "twin"})
    (first, *_) = tables([*subs, twin])
    assert [(r.sub.name, r.rank) for r in first.rows[:3]] == [
        (BURSTY, 1),
        ("twin", 1),
        (HASHMAP, 3),
    ]


def test_copy_baselines_are_rows_of_their_table_and_marked(root):
    for table in tables(_subs(root)):
        assert [r.sub.name for r in table.rows if r.copy_baseline] == [HASHMAP]
        assert [r.rank for r in table.rows if r.copy_baseline] == [2]


def test_entries_on_different_level_sets_are_never_ranked_together(root):
    edit(entry_path(root, RANDOM), relabel_levels(DARK_ROOM))
    subs, problems = validate_files(submission_files(root))
    assert problems == [] and len(subs) == 4
    boards = tables(subs)
    dark = [t for t in boards if t.family == DARK_ROOM]
    assert [[r.sub.name for r in t.rows] for t in dark] == [ORDER[:3], [RANDOM]]
    assert [[r.rank for r in t.rows] for t in dark] == [[1, 2, 3], [1]]
    assert [t.levels for t in dark] == [held_out(DARK_ROOM)[:4], held_out(DARK_ROOM)[4:8]]
    ids = [level_set_id(DARK_ROOM, t.levels) for t in dark]
    assert ids[0] != ids[1]
    for table, set_id in zip(dark, ids, strict=True):
        assert table.title.endswith(f", level set {set_id} (4 levels)")
    # the other family's levels are shared: one table, titled as before
    (key_door,) = [t for t in boards if t.family == KEY_DOOR]
    assert len(key_door.rows) == 4 and "level set" not in key_door.title


def test_suite_version_1_entries_are_archived():
    assert newest_version() == SUITE_VERSION
    subs, _ = validate_files(V1_FILES)
    boards = tables(subs)
    assert boards and all(t.archived and t.ranked == [] and not t.saturated for t in boards)
    assert {t.suite_version for t in boards} == {"1"}
    for table in boards:
        names = [r.sub.name for r in table.rows]
        assert names == sorted(names) and {r.rank for r in table.rows} == {0}


def test_a_newer_suite_version_archives_the_older_entries(root, monkeypatch):
    subs = _subs(root)
    newer, older = add_suite_version(monkeypatch), SUITE_VERSION
    assert newest_version() == newer
    boards = tables(subs)
    assert len(boards) == 2 and all(t.archived and t.ranked == [] for t in boards)
    for table in boards:
        assert [r.sub.name for r in table.rows] == sorted(s.name for s in subs)
        assert {r.rank for r in table.rows} == {0}
    # an entry of the newest version is ranked, and its tables come before the archive
    current = subs[1].model_copy(update={"name": "current", "suite_version": newer})
    boards = tables([*subs, current])
    assert [(t.suite_version, t.archived) for t in boards] == [(newer, False)] * 2 + [
        (older, True)
    ] * 2
    assert [[(r.sub.name, r.rank) for r in t.rows] for t in boards[:2]] == [[("current", 1)]] * 2


def _dark_room(subs) -> Table:
    return next(t for t in tables(subs) if t.family == DARK_ROOM)


def _set(subs, values: dict, rest: float):
    return [_with_success(s, values.get(s.name, rest)) for s in subs]


def test_a_table_whose_best_entry_reaches_095_of_the_bar_is_saturated(root):
    """Saturated: the best entry other than the references reaches 0.95 of the way from random
    to the decoder (here, no decoder: the expert's success of 1). Expected values by hand."""
    subs = _subs(root)
    assert not _dark_room(subs).saturated  # the run's own table: 0.8 at the top
    # (0.98 - 0.1) / (1 - 0.1) = 0.978
    assert _dark_room(_set(subs, {RANDOM: 0.1}, 0.98)).saturated
    assert not _dark_room(_set(subs, {RANDOM: 0.1}, 0.5)).saturated
    # only the best trained entry counts: one at the bar is enough ...
    assert _dark_room(_set(subs, {RANDOM: 0.1, BURSTY: 0.98}, 0.5)).saturated
    # ... and a copy baseline at the bar is not a trained entry
    assert not _dark_room(_set(subs, {RANDOM: 0.1, HASHMAP: 0.99}, 0.5)).saturated
    # the boundary, on the random-to-ceiling scale: (0.96 - 0.2) / 0.8 = 0.95; 0.955 gives 0.944
    assert _dark_room(_set(subs, {RANDOM: 0.2, BURSTY: 0.96}, 0.3)).saturated
    assert not _dark_room(_set(subs, {RANDOM: 0.2, BURSTY: 0.955}, 0.3)).saturated
    # a raw 0.96 is not saturated where random already scores 0.5: (0.96 - 0.5) / 0.5 = 0.92
    assert not _dark_room(_set(subs, {RANDOM: 0.5, BURSTY: 0.96}, 0.5)).saturated


def test_the_expert_does_not_count_towards_saturation(root):
    subs = _set(_subs(root), {RANDOM: 0.1}, 0.5)
    expert = subs[0].model_copy(
        update={"name": "expert", "model": subs[0].model.model_copy(update={"policy": "expert"})}
    )
    table = _dark_room([*subs, _with_success(expert, 1.0)])
    assert table.rows[0].sub.name == "expert" and not table.saturated
    # with a trained entry at the bar the table is saturated, whatever the expert scored
    subs = _set(_subs(root), {RANDOM: 0.1, ISOLATED: 0.99}, 0.5)
    assert _dark_room([*subs, _with_success(expert, 0.2)]).saturated
