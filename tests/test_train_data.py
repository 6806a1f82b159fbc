"""The training batch stream: a DataLoader over the prompt builder gives the same batches, in the
same order, with 0 or 2 worker processes, and a batch depends only on (seed, step)."""

from __future__ import annotations

import dataclasses
from functools import partial

import numpy as np
import pytest
import torch
from contexts_support import make_store

from trajbench.contexts import ContextBuilder
from trajbench.pipeline.train import BatchStream, batch_seed


def make_builder(params: dict, mode: str) -> ContextBuilder:
    return ContextBuilder(make_store(**params), mode=mode, k=2, partial=True, seed=0)


def batches(mode: str, workers: int, start: int, stop: int, seed: int = 3) -> list:
    params = dict(seed=1, n_families=2, n_levels=4)
    stream = BatchStream(partial(make_builder, params, mode), 8, seed, start, stop)
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=workers)
    return list(loader)


def assert_same(a, b) -> None:
    assert [step for step, _ in a] == [step for step, _ in b]
    for (_, x), (_, y) in zip(a, b, strict=True):
        for f in dataclasses.fields(x):
            assert np.array_equal(getattr(x, f.name), getattr(y, f.name)), f.name


@pytest.mark.parametrize("mode", ["bursty", "shuffled", "isolated"])
def test_workers_do_not_change_the_batches_or_their_order(mode):
    serial = batches(mode, 0, 0, 7)
    assert [step for step, _ in serial] == list(range(7))
    assert_same(serial, batches(mode, 2, 0, 7))
    # Consecutive steps differ (the seed really moves with the step).
    assert not np.array_equal(serial[0][1].episode_id, serial[1][1].episode_id)


def test_a_resumed_stream_continues_exactly():
    full = batches("trajectories", 0, 0, 6)
    assert_same(full[4:], batches("trajectories", 2, 4, 6))
    # Step s's batch is builder.sample(n, seed=batch_seed(seed, s)) whatever came before.
    builder = make_builder(dict(seed=1, n_families=2, n_levels=4), "trajectories")
    direct = builder.sample(8, seed=batch_seed(3, 5))
    assert np.array_equal(direct.episode_id, full[5][1].episode_id)
    assert not np.array_equal(
        full[5][1].episode_id, batches("trajectories", 0, 5, 6, seed=4)[0][1].episode_id
    )
