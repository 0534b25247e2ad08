"""Shared fixtures. Tests use tiny inputs; every run store lives in a temporary folder. Tests marked
`slow` (registered in pyproject.toml) are left out by `make test-fast`."""

from __future__ import annotations

import os

import pytest
import torch

# no progress bars in test output, unless a run of the suite asks for them (`harness.progress`)
os.environ.setdefault("HARNESS_PROGRESS", "0")
# at most 2 threads: the tests' tiny matrix products gain nothing from more, and the workers and
# subprocesses that tests start need cores of their own
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def store(tmp_path):
    from harness.store.runs import RunStore

    return RunStore(tmp_path / "runs")


@pytest.fixture
def tiny_cfg():
    """A run that trains in about a second: MLP 32-32 on scikit-learn's digits, 3 epochs."""
    from harness.config import RunConfig

    return RunConfig(experiment="t").replace(
        **{"data.name": "digits", "model.widths": [32, 32], "train.epochs": 3, "train.lr": 0.05}
    )
