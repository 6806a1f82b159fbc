"""Tests for trajbench.leaderboard.schema: the models of both schema versions, the JSON Schema
file, the suite versions."""

import doctest
import json

import gymnasium as gym
import jsonschema
import pytest
from leaderboard_support import (
    ISOLATED,
    REPO,
    V1_FILES,
    drop_field,
    entry_path,
    set_value,
)
from pydantic import ValidationError

import trajbench
from trajbench import suite
from trajbench.leaderboard import ranking, render, schema, submit, validate
from trajbench.leaderboard.schema import (
    Aggregate,
    AggregateV1,
    Bootstrap,
    Record,
    RecordV1,
    Submission,
    SubmissionV1,
    parse,
)

pytest_plugins = ["leaderboard_support"]


@pytest.mark.parametrize("module", [schema, validate, submit, ranking, render, suite])
def test_docstring_examples_run(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


def test_suite_version_names_registered_families_and_current_split():
    spec = suite.SUITE_VERSIONS[suite.SUITE_VERSION]
    assert spec["split_version"] == trajbench.envs.SPLIT_VERSION
    assert [f for f in spec["families"] if f not in gym.registry] == []
    assert schema.schema_of(suite.SUITE_VERSION) == schema.SCHEMA_VERSION == 2


def test_schema_file_is_up_to_date():
    assert (REPO / "leaderboard" / "schema.json").read_text() == schema.schema_text()


@pytest.mark.parametrize(
    "record, aggregate, agg_keys, record_keys",
    [
        (Record, Aggregate, schema.AGG_KEYS, schema.RECORD_KEYS),
        (RecordV1, AggregateV1, schema.AGG_KEYS_V1, schema.RECORD_KEYS_V1),
    ],
)
def test_records_and_aggregates_share_their_key_fields(record, aggregate, agg_keys, record_keys):
    keys = list(agg_keys)
    assert list(record.model_fields)[: len(keys)] == keys
    assert list(aggregate.model_fields)[: len(keys)] == keys
    assert list(record_keys) == [*keys, "seed", "level"]


def test_v2_keys_add_format_and_eval_instruction():
    assert (*schema.AGG_KEYS_V1, "format", "eval_instruction") == schema.AGG_KEYS
    assert Submission.AGG_KEYS == schema.AGG_KEYS and SubmissionV1.AGG_KEYS == schema.AGG_KEYS_V1


def test_json_schema_agrees_with_the_models(root):
    validator = jsonschema.Draft202012Validator(json.loads(schema.schema_text()))
    for path in (entry_path(root), entry_path(root, ISOLATED), V1_FILES[0]):
        sub = json.loads(path.read_text())
        validator.validate(sub)
        for change in (
            drop_field,
            set_value("suite_version", "7"),
            set_value("bootstrap", "confidence", 0.5),
            set_value("schema_version", 3),
        ):
            bad = json.loads(json.dumps(sub))
            change(bad)
            assert not validator.is_valid(bad)


def test_parse_picks_the_model_of_the_schema_version(root):
    v2 = parse(json.loads(entry_path(root).read_text()))
    v1 = parse(json.loads(V1_FILES[0].read_text()))
    assert isinstance(v2, Submission) and isinstance(v1, SubmissionV1)
    assert v2.bootstrap.method == "mean, seeds and levels"
    assert v1.bootstrap.method == "iqm, seeds"  # the default: the v1 files have no method
    assert "method" not in json.loads(V1_FILES[0].read_text())["bootstrap"]
    with pytest.raises(ValueError, match="unknown schema version 3 \\(1, 2 accepted\\)"):
        parse({"schema_version": 3})


def test_success_is_the_statistic_of_the_schema(root):
    v2 = parse(json.loads(entry_path(root).read_text()))
    v1 = parse(json.loads(V1_FILES[0].read_text()))
    assert [a.success for a in v2.aggregates] == [a.success_mean for a in v2.aggregates]
    assert [a.success for a in v1.aggregates] == [a.success_iqm for a in v1.aggregates]
    assert (Aggregate.STATISTIC, AggregateV1.STATISTIC) == ("mean", "IQM")


def test_the_bootstrap_method_belongs_to_the_schema(root):
    sub = json.loads(entry_path(root).read_text())
    sub["bootstrap"]["method"] = "iqm, seeds"
    with pytest.raises(ValidationError, match="method must be 'mean, seeds and levels'"):
        parse(sub)
    del sub["bootstrap"]["method"]  # the default is schema 1's
    with pytest.raises(ValidationError, match="method must be 'mean, seeds and levels'"):
        parse(sub)
    old = json.loads(V1_FILES[0].read_text())
    old["bootstrap"]["method"] = "mean, seeds and levels"
    with pytest.raises(ValidationError, match="method must be 'iqm, seeds'"):
        parse(old)
    assert Bootstrap(reps=1000, confidence=0.95, seed=0).method == "iqm, seeds"


def test_each_suite_version_has_its_schema(root):
    old = json.loads(V1_FILES[0].read_text())
    old["suite_version"] = "2"
    with pytest.raises(ValidationError, match="suite version 2 are written with schema 2, not 1"):
        parse(old)
    sub = json.loads(entry_path(root).read_text())
    sub["suite_version"] = "1"
    with pytest.raises(ValidationError, match="suite version 1 are written with schema 1, not 2"):
        parse(sub)


def test_decoy_fields_only_where_a_decoy_was_shown(root):
    sub = parse(json.loads(entry_path(root).read_text()))
    rec = next(r for r in sub.records if r.eval_instruction == "full")
    with pytest.raises(ValidationError, match="decoy_success needs eval_instruction 'decoy'"):
        Record.model_validate({**rec.model_dump(), "decoy_success": 0.5})
    agg = next(a for a in sub.aggregates if a.eval_instruction == "decoy").model_dump()
    with pytest.raises(ValidationError, match="_ci_low and _ci_high go together"):
        Aggregate.model_validate({**agg, "decoy_success_ci_low": None})
    with pytest.raises(ValidationError, match="decoy_success_mean needs eval_instruction"):
        Aggregate.model_validate({**agg, "eval_instruction": "full"})


def test_absent_decoy_fields_are_left_out_of_the_file(root):
    sub = json.loads(entry_path(root).read_text())
    for item in sub["records"] + sub["aggregates"]:
        decoys = {k for k in item if k.startswith("decoy_success")}
        assert bool(decoys) == (item["eval_instruction"] == "decoy"), item
