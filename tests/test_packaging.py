"""The wheel users install: every package reaches it, and a non-editable install of it, in a fresh
virtual environment outside the checkout, runs the ``ci`` preset, the leaderboard check and
``trajbench envs`` on its own code (not on an editable install's)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from test_architecture import ROOT, SOURCES  # source folder -> the package it installs as

#: What a build needs besides the source folders.
BUILD_FILES = ("pyproject.toml", "setup.py", "README.md")


def source_packages(root: Path = ROOT) -> set[str]:
    """Every folder with an ``__init__.py`` under a source folder, as the package it installs as."""
    found = set()
    for folder, package in SOURCES.items():
        for init in (root / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(root / folder).parts
            found.add(".".join([package, *parts]))
    return found


def wheel_packages(wheel: Path) -> set[str]:
    """The packages a wheel installs (folders holding an ``__init__.py``)."""
    names = zipfile.ZipFile(wheel).namelist()
    return {n.rpartition("/")[0].replace("/", ".") for n in names if n.endswith("/__init__.py")}


def build_wheel(root: Path, into: Path) -> Path:
    """Build the project's wheel from a clean copy of ``root`` (a stale ``build/`` in the checkout
    can carry deleted modules into a wheel built in place)."""
    copy = into / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for folder in SOURCES:
        shutil.copytree(root / folder, copy / folder, ignore=ignore)
    for name in BUILD_FILES:
        shutil.copy2(root / name, copy / name)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(copy), "-w", str(into)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    (wheel,) = into.glob("trajbench-*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return build_wheel(ROOT, tmp_path_factory.mktemp("wheel"))


def test_every_package_reaches_the_wheel(wheel):
    expected = source_packages()
    assert {"trajbench.report", "trajbench.envs", "trajbench.baselines"} <= expected
    assert wheel_packages(wheel) == expected
    assert "trajbench/py.typed" in zipfile.ZipFile(wheel).namelist()


def test_the_all_extra_holds_every_extra(wheel):
    """scripts/test.sh installs ``.[all]``: an extra added later must join it."""
    zf = zipfile.ZipFile(wheel)
    (name,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
    meta = zf.read(name).decode()
    extras = set(re.findall(r"^Provides-Extra: (\S+)$", meta, re.M)) - {"all"}
    (joined,) = re.findall(r'^Requires-Dist: trajbench\[([^]]*)\]; extra == "all"$', meta, re.M)
    assert set(joined.split(",")) == extras and "minari" in extras


def test_a_package_left_out_is_detected(tmp_path):
    """The rule can fail: a wheel without one package's ``__init__.py`` is not the source tree."""
    fake = tmp_path / "fake.whl"
    with zipfile.ZipFile(fake, "w") as zf:
        for package in source_packages() - {"trajbench.report"}:
            zf.writestr(package.replace(".", "/") + "/__init__.py", "")
    assert source_packages() - wheel_packages(fake) == {"trajbench.report"}


def fresh_venv(where: Path) -> Path:
    """A virtual environment that sees the running interpreter's packages (the README install put
    the dependencies there) but not its ``.pth`` files, so an editable trajbench stays out."""
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(where)], check=True)
    python = where / ("Scripts" if os.name == "nt" else "bin") / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(purelib) / "_parent_site.pth").write_text("\n".join(sorted(ours)) + "\n")
    return python


@pytest.mark.slow
def test_the_installed_wheel_runs_the_ci_preset_outside_the_checkout(wheel, tmp_path, ci_run):
    python = fresh_venv(tmp_path / "venv")
    pip = [python, "-m", "pip", "install", "--no-deps", "-q", str(wheel)]
    subprocess.run(pip, check=True, capture_output=True, timeout=300)
    where = subprocess.run(
        [
            python,
            "-c",
            "import trajbench, trajbench.report as r; print(trajbench.__file__, r.__file__)",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    venv = (tmp_path / "venv").resolve()
    assert all(Path(p).resolve().is_relative_to(venv) for p in where), where

    script = str(python.parent / "trajbench")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("PYTHONPATH", None)

    def run(*args: str, cwd: Path = tmp_path) -> str:
        done = subprocess.run(
            [script, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    run("run", "--preset", "ci", "--out", str(tmp_path / "ci"), "--workers", "1", "--no-progress")
    ours = pd.read_parquet(tmp_path / "ci" / "records.parquet")
    pd.testing.assert_frame_equal(ours, pd.read_parquet(ci_run / "records.parquet"))
    assert (tmp_path / "ci" / "report.md").is_file()
    assert "up to date" in run("leaderboard", "build", "--check", cwd=ROOT)
    assert "trajbench/DarkRoom-v0" in run("envs")
