"""Package discovery, so that no package can be left out of the wheel.

Every folder with an ``__init__.py`` under a source folder installs, under the package name the
source folder maps to: ``trajbench/`` as ``trajbench``, the top-level ``envs/`` and ``baselines/``
as ``trajbench.envs`` and ``trajbench.baselines``. Everything else is in ``pyproject.toml``.
"""

from setuptools import find_packages, setup

#: Source folder -> the package it installs as.
SOURCES = {"trajbench": "trajbench", "envs": "trajbench.envs", "baselines": "trajbench.baselines"}


def packages() -> list[str]:
    """Every package of every source folder, under its installed name."""
    found = []
    for folder, package in SOURCES.items():
        found += [package, *(f"{package}.{sub}" for sub in find_packages(folder))]
    return found


setup(packages=packages(), package_dir={package: folder for folder, package in SOURCES.items()})
