"""``--policy package.module:factory``: a policy trajbench did not train, named by its import path
and version; one clear line for a path that does not import, a factory that raises, or one that
returns something that is not a policy."""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from pipeline_support import DARK_ROOM, collected

import trajbench
from trajbench import cli
from trajbench.envs import ObsEncoding
from trajbench.errors import TrajbenchError
from trajbench.pipeline.policies import check_outside, describe, load_policy, package_version

ENCODING = ObsEncoding("dark-room", (9, 9), 5)

#: A user's package, outside trajbench: policies that subclass Policy and that only quack like one.
PACKAGE = {
    "userpkg/__init__.py": '__version__ = "2.3.1"\n',
    "userpkg/agents.py": """
        import numpy as np
        from trajbench.policy import Policy

        class Always(Policy):
            def __init__(self, action, n_actions):
                self.action, self.n_actions = action, n_actions
            def begin(self, rows):
                self.n_rows = len(rows)
            def act(self, obs, prev_action, prev_reward, rows):
                return np.full(len(rows), self.action)

        class Duck:  # no base class: begin and act are the whole interface
            def begin(self, rows):
                pass
            def act(self, obs, prev_action, prev_reward, rows):
                return np.zeros(len(rows), dtype=np.int64)

        def make(encoding, action=0):
            return Always(action, int(encoding.n_actions))

        def make_duck():
            return Duck()

        def broken(**kwargs):
            raise RuntimeError("no GPU here")

        def not_a_policy(**kwargs):
            return {"begin": None}

        class Factories:
            seeded = staticmethod(lambda seed, **kw: Always(seed % 5, 5))
        """,
    "userpkg/fails_on_import.py": "raise ImportError('needs jax')\n",
}


@pytest.fixture()
def userpkg(tmp_path, monkeypatch):
    """The package on disk; the current directory is its root (sys.path is restored after)."""
    for name, text in PACKAGE.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(textwrap.dedent(text))
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    for name in [m for m in sys.modules if m.split(".")[0] == "userpkg"]:
        del sys.modules[name]


@pytest.fixture(scope="module")
def dr_test(tmp_path_factory) -> str:
    return collected(tmp_path_factory, "dr-test", DARK_ROOM, "test", 4, seed=1)


def test_factories_resolve_with_their_arguments(userpkg, monkeypatch):
    monkeypatch.syspath_prepend(str(userpkg))
    policy, info = load_policy("userpkg.agents:make", ENCODING, seed=3, policy_kwargs={"action": 2})
    assert (policy.action, policy.n_actions) == (2, 5)  # encoding passed, seed not taken
    assert (info.policy, info.policy_version, info.model_params) == (
        "userpkg.agents:make",
        "2.3.1",
        0,
    )
    policy, _ = load_policy("userpkg.agents:Factories.seeded", ENCODING, seed=7)
    assert policy.action == 2  # a dotted attribute, given the seed it takes
    policy, info = load_policy("userpkg.agents:make_duck", ENCODING, seed=0)
    check_outside(policy, "duck")  # no base class: begin and act are the interface
    assert info.policy_version == "2.3.1"


def test_the_cli_scores_a_factory_from_the_current_directory(userpkg, capsys, dr_test):
    assert str(userpkg) not in sys.path  # evaluate puts it there, as `python -m` does
    out = userpkg / "eval"
    flags = ["--policy", "userpkg.agents:make", "--policy-kwargs", '{"action": 4}']
    flags += ["--data", dr_test, "--out", str(out), "--ks", "0", "2", "--episodes", "2"]
    code = cli.main(["evaluate", *flags, "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    records = pd.read_parquet(out / "records.parquet")
    assert set(records["policy"]) == {"userpkg.agents:make"}
    assert set(records["policy_version"]) == {"2.3.1"} and set(records["backbone"]) == {"-"}
    assert len(records) == 16 * (1 + 2) * 2  # levels x (k=0; k=2 same, other) x episodes
    assert "userpkg.agents:make" in captured.out


def _error(capsys, *flags: str) -> str:
    code = cli.main(["evaluate", *flags, "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("trajbench evaluate: error: ")
    return err


def test_bad_factories_are_one_line_and_write_nothing(userpkg, capsys, dr_test):
    out = userpkg / "eval"
    cases = {
        "nopkg.agents:make": "cannot import 'nopkg.agents': ModuleNotFoundError",
        "userpkg.fails_on_import:make": "cannot import 'userpkg.fails_on_import': ImportError: needs jax",
        "userpkg.agents:nothing": "'userpkg.agents' has no attribute 'nothing'",
        "userpkg.agents:np": "'np' is a module, not callable",
        "userpkg.agents:broken": "the factory raised RuntimeError: no GPU here",
        "userpkg.agents:not_a_policy": "the factory returned a dict, not a policy",
        "userpkg.agents:Always": "the factory raised TypeError",  # a required argument is missing
        "userpkg/agents.py": "is not a model directory written by trajbench train",
    }
    for spec, expected in cases.items():
        err = _error(capsys, "--policy", spec, "--data", dr_test, "--out", str(out))
        assert expected in err, (spec, err)
        assert not out.exists()
    for kwargs, expected in {
        "{action: 1}": "--policy-kwargs is not valid JSON",
        "[1, 2]": "--policy-kwargs must be a JSON object",
    }.items():
        flags = ["--policy", "userpkg.agents:make", "--policy-kwargs", kwargs]
        assert expected in _error(capsys, *flags, "--data", dr_test, "--out", str(out))
    flags = ["--policy", "random", "--policy-kwargs", '{"a": 1}', "--data", dr_test]
    assert "package.module:factory policy only" in _error(capsys, *flags, "--out", str(out))


def test_versions_and_descriptions():
    assert package_version("trajbench.baselines.reference") == trajbench.__version__
    assert package_version("no.such.module") == "unknown"
    info = describe(type("Local", (), {"begin": None, "act": None})())
    assert info.policy.endswith(":Local") and info.policy_version == "unknown"
    assert describe(object(), name="mine", version="7").policy_version == "7"
    for thing in (object(), np.zeros(3)):
        with pytest.raises(TrajbenchError, match="not a policy"):
            check_outside(thing, "got")
    with pytest.raises(TrajbenchError, match="not a model directory"):
        load_policy("no-such-thing", ENCODING, seed=0)
