"""``trajbench analyze instructions``: chance, inferability, the guess-normalized score, end to end."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest

import trajbench  # noqa: F401  (registers the families)
from trajbench.analysis import instructions as I
from trajbench.analysis import main as analyze
from trajbench.errors import TrajbenchError
from trajbench.vocab import CONTENT_WORDS, words

GOTO = "trajbench/GoToLocal-v0"


def _layout(env_id: str, level: int):
    env = gym.make(env_id)
    env.reset(seed=0, options={"level": level})
    u = env.unwrapped
    objs = [(o.type, o.color) for o in u.grid.grid if o is not None and o.type in I.CANDIDATE_TYPES]
    mission = u.mission
    env.close()
    return objs, mission


def _named(mission: str) -> tuple[str | None, str | None]:
    """(type, color) named by a go-to mission, read from its words."""
    ws = words(mission)
    color = next((w for w in ws if CONTENT_WORDS.get(w) == "<color>"), None)
    kind = next((w for w in ws if CONTENT_WORDS.get(w) == "<obj>"), None)
    return kind, color


@pytest.mark.parametrize("level", [9000, 9001, 9002, 9003, 9007])
def test_gotolocal_chance_and_inferability_match_the_layout(level: int):
    objs, mission = _layout(GOTO, level)
    kind, color = _named(mission)
    matching = sum(o == (kind, color) for o in objs)
    info = I.level_targets(GOTO, level)
    assert info["mission"] == mission
    assert info["n_objects"] == len(objs)
    assert info["chance"] == pytest.approx(matching / len(objs))
    # GoToLocal's expert ends facing an object of the named type and color; the mission is
    # inferable exactly when that object has no look-alike.
    assert info["target"] == f"{color} {kind}"
    assert info["inferable"] == (matching == 1)
    assert mission.startswith("go to the " if matching == 1 else "go to a ")


def test_known_levels_cover_both_sides_of_the_split():
    assert I.level_targets(GOTO, 9000)["inferable"] is True  # "go to the green key"
    not_inferable = I.level_targets(GOTO, 9001)  # "go to a grey ball": two grey balls
    assert not_inferable["inferable"] is False
    assert not_inferable["chance"] == pytest.approx(2 / 8)
    assert not_inferable["lookalikes"] == 1


def test_pickup_location_words_narrow_the_satisfying_objects():
    info = I.level_targets("trajbench/PickupLoc-v0", 9007)  # "... yellow box behind you"
    objs, mission = _layout("trajbench/PickupLoc-v0", 9007)
    assert "behind you" in mission
    assert info["n_satisfying"] == 1
    assert info["chance"] == pytest.approx(1 / len(objs))


def test_putnext_chance_counts_ordered_pairs():
    info = I.level_targets("trajbench/PutNextLocal-v0", 9000)  # 8 distinct objects
    n = info["n_objects"]
    assert info["chance"] == pytest.approx(info["n_satisfying"] / (n * (n - 1)))
    assert info["n_satisfying"] == 1 and info["inferable"] is True
    near = I.level_targets("trajbench/PutNextLocal-v0", 9001)  # ends next to two objects
    assert near["target"].count("+") == 2 and near["inferable"] is False


def test_guess_normalized_score():
    np.testing.assert_allclose(I.guess_normalized([1.0, 0.25, 0.0], 0.25), [1.0, 0.0, -1 / 3])
    np.testing.assert_allclose(I.guess_normalized([0.5, 0.5], [0.0, 0.5]), [0.5, 0.0])
    assert I.guess_normalized(1.0, 0.125) == 1.0
    with pytest.raises(TrajbenchError, match="chance"):
        I.guess_normalized(1.0, 1.0)


def test_families_without_object_missions_are_recognised():
    assert I.has_object_missions(GOTO)
    assert not I.has_object_missions("trajbench/DarkRoom-v0")
    with pytest.raises(TrajbenchError, match="no object mission"):
        I.level_targets("trajbench/DarkRoom-v0", 3)


# -- end to end ----------------------------------------------------------------------------------
LEVELS = [9000, 9001, 9002, 9003, 9007, 9008]


def _records(instructions=("full", "empty")) -> pd.DataFrame:
    """Hand-made records: 'full' always succeeds; 'empty' succeeds only where inferable."""
    inferable = {lv: I.level_targets(GOTO, lv)["inferable"] for lv in LEVELS}
    rows = []
    for instr in instructions:
        for seed in (0, 1):
            for lv in LEVELS:
                ok = instr == "full" or inferable[lv]
                rows.append(
                    dict(
                        policy="transformer",
                        train_context="bursty",
                        instruction=instr,
                        family=GOTO,
                        eval_split="test_levels",
                        k=4,
                        support="same",
                        seed=seed,
                        level=lv,
                        episode=0,
                        success=ok,
                    )
                )
    return pd.DataFrame(rows)


def test_records_end_to_end_split_and_score(tmp_path: Path):
    path = tmp_path / "records.parquet"
    _records().to_parquet(path)
    out = tmp_path / "out"
    assert (
        analyze(["instructions", "--records", str(path), "--out", str(out), "--no-progress"]) == 0
    )
    table = pd.read_csv(out / "instructions.csv")
    got = {(r.instruction, r.inferable) for r in table.itertuples()}
    assert got == {(i, p) for i in ("full", "empty") for p in ("inferable", "not inferable")}
    by = table.set_index(["instruction", "inferable"])
    assert by.loc[("full", "inferable"), "guess_normalized_mean"] == pytest.approx(1.0)
    assert by.loc[("empty", "inferable"), "guess_normalized_mean"] == pytest.approx(1.0)
    # 'empty' never succeeds on the non-inferable levels (chance 2/8 on each): score -1/3.
    assert by.loc[("empty", "not inferable"), "guess_normalized_mean"] == pytest.approx(-1 / 3)
    assert by.loc[("empty", "not inferable"), "chance_mean"] == pytest.approx(0.25)
    levels = pd.read_csv(out / "instructions_levels.csv")
    assert sorted(levels.level) == LEVELS
    md = (out / "instructions.md").read_text()
    assert "on not inferable levels `full` scores 1.00, `empty` -0.33 (lower, CIs separated)" in md
    assert "on inferable levels `full` scores 1.00, `empty` 1.00 (CIs overlap)" in md
    assert "not inferable vs where it is: `empty` +1.33 vs +0.00." in md
    assert (out / "instructions.png").stat().st_size > 1000


def test_models_end_to_end_with_reference_policies(tmp_path: Path):
    from trajbench.collect import CollectConfig, collect

    data = collect(
        CollectConfig(
            env=GOTO,
            levels=",".join(map(str, LEVELS)),
            episodes_per_level=5,
            out=tmp_path / "data",
            progress=False,
        )
    )
    out = tmp_path / "out"
    argv = ["instructions", "--models", "expert", "random", "--eval.data", str(data)]
    argv += ["--out", str(out), "--ks", "4", "--eval.episodes", "1", "--no-progress"]
    assert analyze(argv) == 0
    table = pd.read_csv(out / "instructions.csv")
    assert set(zip(table.policy, table.inferable, strict=True)) == {
        (p, s) for p in ("expert", "random") for s in ("inferable", "not inferable")
    }
    expert = table[table.policy == "expert"]
    assert (expert.guess_normalized_mean == 1.0).all() and (expert.success_mean == 1.0).all()
    assert (table.k == 4).all() and (table.support == "same").all()


def test_bad_input_is_one_clear_error(tmp_path: Path):
    out = ["--out", str(tmp_path / "o"), "--no-progress"]
    with pytest.raises(TrajbenchError, match="exactly one of"):
        analyze(["instructions", *out])
    with pytest.raises(TrajbenchError, match=r"no records\.parquet"):
        analyze(["instructions", "--run", str(tmp_path), *out])
    bad = tmp_path / "bad.parquet"
    _records().drop(columns=["instruction"]).to_parquet(bad)
    with pytest.raises(TrajbenchError, match="lack column"):
        analyze(["instructions", "--records", str(bad), *out])
    dark = tmp_path / "dark.parquet"
    _records().assign(family="trajbench/DarkRoom-v0").to_parquet(dark)
    with pytest.raises(TrajbenchError, match="object missions"):
        analyze(["instructions", "--records", str(dark), *out])
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes(b"not parquet")
    with pytest.raises(TrajbenchError, match="cannot read"):
        analyze(["instructions", "--records", str(corrupt), *out])
    with pytest.raises(TrajbenchError, match=r"--eval\.data"):
        analyze(["instructions", "--models", "random", *out])
    assert not (tmp_path / "o").exists()
