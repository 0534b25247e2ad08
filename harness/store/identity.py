"""A run's identity, where its config and its data meet.

`run_id(cfg)` names a run's folder in the store: the hash of everything that determines its result
(`harness.config.config_hash`: the config without its labels, the training-code version) and of the
data it trains on (`harness.data.datasets.fingerprint`: the parsed arrays). Runs on changed data get new
identities, never a cached result. Config knows nothing of data; this module knows both.
"""

from __future__ import annotations

from pathlib import Path

from harness.config import RunConfig, config_hash
from harness.data.datasets import fingerprint


def run_id(cfg: RunConfig) -> str:
    """The run's identity: 12 hex digits (reads the data's files once per process, again when they
    change). A user's .npz file is identified by its content and file name, not the folder it lies
    in, so a moved file keeps its runs."""
    named = cfg.replace(**{"data.name": Path(cfg.data.name).name}) if cfg.data.name.endswith(".npz") else cfg
    return config_hash(named, fingerprint(cfg.data.name))


def design_key(cfg: RunConfig) -> str:
    """What tells two configs of one experiment apart without reading any data (the data's name is
    part of the config): used to refuse a run listed twice before the data are in place."""
    return config_hash(cfg, "")
