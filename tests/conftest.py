"""Shared fixtures. Tests use tiny inputs; every run store lives in a temporary folder."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HARNESS_PROGRESS", "0")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def store(tmp_path):
    from harness.store.runs import RunStore

    return RunStore(tmp_path / "runs")


@pytest.fixture
def tiny_cfg():
    """A run that trains in about a second: MLP 64-64 on scikit-learn's digits."""
    from harness.config import RunConfig

    return RunConfig(experiment="t").replace(
        **{"data.name": "digits", "model.widths": [32, 32], "train.epochs": 3, "train.lr": 0.05}
    )
