"""Shared by the pipeline tests (not a test module): small collected stores and barely trained
models.

- :func:`collected`: a store of expert episodes of a family's levels, written under pytest's
  temporary root;
- :func:`tiny_model`: a d16 x 1 model trained for a few steps on a store;
- the fixtures ``dr_test`` (Dark Room's 16 held-out levels, 8 episodes each) and ``goto_test``
  (8 held-out GoToLocal levels, 5 episodes each), which a test module loads with
  ``pytest_plugins = ["pipeline_support"]``.
"""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import pytest

import trajbench  # noqa: F401  (registers the families)
from trajbench.baselines.transformer import ModelConfig
from trajbench.collect import CollectConfig, collect
from trajbench.contexts import ContextConfig
from trajbench.pipeline.train import TrainConfig, train

DARK_ROOM = "trajbench/DarkRoom-v0"
GOTO = "trajbench/GoToLocal-v1"


def collected(
    tmp_path_factory, name: str, env: str, levels: str, episodes_per_level: int, **kw
) -> str:
    """Expert episodes of ``levels`` of ``env`` in a store directory ``name`` (any other
    :class:`CollectConfig` field in ``kw``)."""
    out = tmp_path_factory.mktemp("data") / name
    cfg = CollectConfig(
        env=env, levels=levels, episodes_per_level=episodes_per_level, out=out, progress=False, **kw
    )
    return str(collect(cfg))


def tiny_model(data: str | Path, out: str | Path, context: ContextConfig, **kw) -> str:
    """A d16 x 1 model trained for 2 steps (``kw`` overrides any :class:`TrainConfig` field)."""
    cfg = dict(
        data=(str(data),),
        out=str(out),
        context=context,
        model=ModelConfig(d_model=16, n_layers=1, n_heads=2),
        steps=2,
        batch_size=4,
        threads=1,
        progress=False,
    )
    return str(train(TrainConfig(**{**cfg, **kw})))


@pytest.fixture(scope="module")
def dr_test(tmp_path_factory) -> str:
    """Expert episodes of Dark Room's 16 held-out levels."""
    return collected(tmp_path_factory, "dr-test", DARK_ROOM, "test", 8, seed=1)


@pytest.fixture(scope="module")
def goto_test(tmp_path_factory) -> str:
    """Expert episodes of 8 held-out GoToLocal levels."""
    env = gym.make(GOTO)
    levels = ",".join(str(int(x)) for x in env.unwrapped.splits()["test"][:8])
    env.close()
    return collected(tmp_path_factory, "goto-test", GOTO, levels, 5)
