"""Tests for trajbench.leaderboard.schema: the models, the JSON Schema file, the suite versions."""

import doctest
import json

import gymnasium as gym
import jsonschema
import pytest
from test_leaderboard_fixtures import REPO, drop_field, entry_path, set_value

import trajbench
from trajbench import suite
from trajbench.leaderboard import ranking, render, schema, submit, validate

pytest_plugins = ["test_leaderboard_fixtures"]


@pytest.mark.parametrize("module", [schema, validate, submit, ranking, render, suite])
def test_docstring_examples_run(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


def test_suite_version_names_registered_families_and_current_split():
    spec = suite.SUITE_VERSIONS[suite.SUITE_VERSION]
    assert spec["split_version"] == trajbench.envs.SPLIT_VERSION
    assert [f for f in spec["families"] if f not in gym.registry] == []


def test_schema_file_is_up_to_date():
    assert (REPO / "leaderboard" / "schema.json").read_text() == schema.schema_text()


def test_records_and_aggregates_share_their_key_fields():
    keys = list(schema.AGG_KEYS)
    assert list(schema.Record.model_fields)[: len(keys)] == keys
    assert list(schema.Aggregate.model_fields)[: len(keys)] == keys
    assert list(schema.RECORD_KEYS) == [*keys, "seed", "level"]


def test_json_schema_agrees_with_the_models(root):
    validator = jsonschema.Draft202012Validator(json.loads(schema.schema_text()))
    sub = json.loads(entry_path(root).read_text())
    validator.validate(sub)
    for change in (
        drop_field,
        set_value("suite_version", "7"),
        set_value("bootstrap", "confidence", 0.5),
    ):
        bad = json.loads(json.dumps(sub))
        change(bad)
        assert not validator.is_valid(bad)
