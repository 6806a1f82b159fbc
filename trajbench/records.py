"""The records contract: what evaluation writes and the report, the leaderboard and the analyses
read. Every name of it is spelled here once; elsewhere use ``trajbench.records.X`` instead of the
literal (``tests/test_architecture.py`` checks it).

A *record* is one online episode of one policy on one held-out level, under one (k, support,
format, eval_instruction): a row of ``records.parquet``.

Example:
    records = pd.read_parquet(run / RECORDS_FILE)
    records[records[EVAL_INSTRUCTION] != DECOY]
"""

from __future__ import annotations

from typing import Literal, get_args

# -- files ----------------------------------------------------------------------------------------
#: One row per (policy, level, k, support, format, eval_instruction, episode).
RECORDS_FILE = "records.parquet"
#: ``trajbench run``'s summary and provenance, beside its records.
RESULTS_FILE = "results.json"
#: ``trajbench evaluate``'s provenance, beside its records.
EVALUATION_FILE = "evaluation.json"

# -- columns --------------------------------------------------------------------------------------
#: The context mode a policy trained in ("-" for a policy trajbench did not train).
TRAIN_CONTEXT = "train_context"
#: What the query's mission said at evaluation (:data:`EvalInstruction`).
EVAL_INSTRUCTION = "eval_instruction"
#: What is held out (:data:`Split`).
EVAL_SPLIT = "eval_split"
#: The episode's return over the expert's mean return on its level.
NORMALIZED_RETURN = "normalized_return"
#: Where the query showed a decoy mission: did the agent reach the decoy's object?
DECOY_SUCCESS = "decoy_success"

#: Every column of a record and its kind of values: text, int, float or bool.
#: ``decoy_success`` only where a decoy was shown; ``p_bursty`` and ``group`` are
#: added by ``trajbench run``.
COLUMNS: dict[str, str] = {
    "policy": "text",
    "policy_version": "text",
    "backbone": "text",
    TRAIN_CONTEXT: "text",
    "instruction": "text",
    "train_seed": "int",
    "model_params": "int",
    EVAL_INSTRUCTION: "text",
    "eval_seed": "int",
    "family": "text",
    EVAL_SPLIT: "text",
    "k": "int",
    "support": "text",
    "format": "text",
    "seed": "int",
    "level": "int",
    "episode": "int",
    "return": "float",
    "success": "bool",
    "length": "int",
    NORMALIZED_RETURN: "float",
    DECOY_SUCCESS: "float",
    "p_bursty": "float",
    "group": "text",
}
#: Columns a record may lack (see :data:`COLUMNS`).
OPTIONAL_COLUMNS = (DECOY_SUCCESS, "p_bursty", "group")

# -- values ---------------------------------------------------------------------------------------
#: What the query's mission says: as the model trained, full, empty, template, or a decoy (another
#: object of the level, while the demonstrations go to the true goal).
EvalInstruction = Literal["train", "full", "empty", "template", "decoy"]
EVAL_INSTRUCTIONS: tuple[str, ...] = get_args(EvalInstruction)
#: The eval_instruction of a query that showed a decoy mission.
DECOY = EVAL_INSTRUCTIONS[-1]

#: What is held out: levels of a training family, or whole families.
Split = Literal["test_levels", "test_families"]
TEST_LEVELS, TEST_FAMILIES = get_args(Split)

#: How demonstrations are shown: common (whole, in order, every policy) or matched (a model trained
#: on an unordered mode sees them as it trained).
Format = Literal["common", "matched"]
FORMATS: tuple[str, ...] = get_args(Format)
COMMON, MATCHED = FORMATS

#: Reference policies (no training condition): uniform random, the copy baselines, the in-context
#: decoder and the query-only solver (``trajbench.baselines.decoder``), the expert.
RANDOM, HASHMAP, REPLAY, EXPERT = "random", "hashmap", "replay", "expert"
DECODER, QUERY_ONLY = "decoder", "query-only"
REFERENCES = (RANDOM, HASHMAP, REPLAY, DECODER, QUERY_ONLY, EXPERT)
#: The copy baselines a model must beat.
COPY_BASELINES = (HASHMAP, REPLAY)
#: The bar: the best non-learning reader of the demonstrations; normalized scores put it at 1.
BAR = DECODER
