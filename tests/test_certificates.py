"""The information certificates: the stored table agrees with a fresh computation."""

from __future__ import annotations

import json

import pytest

import trajbench  # noqa: F401  (registers the families)
from trajbench.analysis.certificates import CertificatesConfig, certify, newest_versions
from trajbench.analysis.certificates_report import merged
from trajbench.catalog import family_info
from trajbench.certificates import HEADLINE_MARGIN, classify, stored_certificates
from trajbench.envs.registration import env_ids
from trajbench.errors import TrajbenchError

STORED = stored_certificates()["families"]


def test_the_stored_table_covers_the_newest_version_of_every_family():
    missing = sorted(set(newest_versions(env_ids())) - set(STORED))
    assert not missing, (
        f"no certificate for {missing}: run `trajbench analyze certificates --levels 40 "
        f"--families {' '.join(missing)} --table trajbench/certificates.json` (it keeps the other "
        "families; see docs/certificates.md)"
    )
    assert stored_certificates()["command"].startswith("trajbench analyze certificates")


def test_classify_uses_the_margin_on_the_difference():
    assert classify(0.25, 0.25 + HEADLINE_MARGIN) == "headline"
    assert classify(0.25, 0.54) == "control"
    assert classify(0.0, 0.29) == "control"


@pytest.mark.parametrize(
    ("env_id", "levels"),
    [
        ("trajbench/DarkRoom-v0", 16),
        ("trajbench/DarkSequence-v0", 24),
        ("trajbench/FourRooms-v1", 4),
    ],
)
def test_stored_certificate_matches_a_fresh_small_sample(env_id, levels):
    """A fresh, smaller sample (other seed) lands near the stored figures and in the same class."""
    fresh = certify(env_id, CertificatesConfig(levels=levels, episodes=2, ks=(0, 1), seed=7))
    stored = STORED[env_id]
    assert fresh["class"] == stored["class"]
    assert abs(fresh["query_only"] - stored["query_only"]) <= 0.25
    assert abs(fresh["decoder"]["1"] - stored["decoder"]["1"]) <= 0.15
    assert fresh["decoder"]["0"] == fresh["query_only"]  # K = 0 falls back to the query-only solver


def test_envs_shows_the_class():
    info = family_info("trajbench/DarkRoom-v0")
    assert info["class"] == STORED["trajbench/DarkRoom-v0"]["class"]
    assert info["demo_decoder"] == "goal_cell"


def test_a_table_keeps_the_families_a_run_did_not_measure(tmp_path):
    path = tmp_path / "certificates.json"
    path.write_text(
        json.dumps({"command": "old", "families": {"a": {"gap": 0.1}, "b": {"gap": 0.2}}})
    )
    new = {"command": "new", "config": {}, "families": {"b": {"gap": 0.5}}, "order": {}}
    out = merged(str(path), new)
    assert out["families"] == {"a": {"gap": 0.1}, "b": {"gap": 0.5}}
    assert out["command"] == "new"
    path.write_text("not json")
    with pytest.raises(TrajbenchError, match="not a certificates table"):
        merged(str(path), new)
