"""Suite-wide test settings and the one ``ci`` run the runner, fault and verify tests share."""

from pathlib import Path

import pytest
import torch

from trajbench.pipeline.runner import RunConfig, run


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Two OpenMP threads on a busy 2-core machine are many times slower than one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def ci_run(tmp_path_factory) -> Path:
    """A finished ``trajbench run --preset ci`` (one job at a time); do not modify it."""
    out = tmp_path_factory.mktemp("run") / "ci"
    run(RunConfig(preset="ci", out=str(out), workers=1, progress=False))
    return out
