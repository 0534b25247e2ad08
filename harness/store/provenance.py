"""What produced a run: the harness's training code, package versions, git commit, host and device.

`provenance` is recorded beside every run (`provenance.json`); `training_code` hashes the code that
decides a trained network, so that `runs --stale` can list runs trained by code that has changed since;
`machine_line` names the machine in one line for benchmarks and the plan's calibration.
"""

from __future__ import annotations

import hashlib
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path

import torch

TRAINING_CODE = (
    "config.py",
    "data/datasets.py",
    "data/formats.py",
    "data/registry.py",
    "data/splits.py",
    "data/validation.py",
    "nets/models.py",
    "nets/training.py",
)  # what decides a trained network


def training_code() -> str:
    """16 hex digits of the SHA-256 of the harness's training code, recorded with every run, so that
    `runs --stale` can list runs trained by code that has changed since (FORMAT_VERSION, part of
    the identity, is bumped by hand when a change means old runs must be retrained)."""
    h = hashlib.sha256()
    for name in TRAINING_CODE:
        h.update((Path(__file__).resolve().parents[1] / name).read_bytes())
    return h.hexdigest()[:16]


def provenance(device: str) -> dict:
    import numpy
    import pandas as pd
    import scipy

    from harness import __version__

    return {
        "harness": __version__,
        "training_code": training_code(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "pandas": pd.__version__,
        "scipy": scipy.__version__,
        "git_commit": _git_commit(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "device_name": torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu",
        "argv": sys.argv,
    }


def machine_line(device: str) -> str:
    """The device's name, torch's version and its CPU threads, in one line."""
    name = (
        torch.cuda.get_device_name(device)
        if device.startswith("cuda")
        else (platform.processor() or platform.machine())
    )
    return f"{name}, torch {torch.__version__}, {torch.get_num_threads()} threads"


def _git_commit() -> str:
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
