"""Suite profiles: the shared starting point of every study's configs.

- smoke: scikit-learn digits, tiny networks, one or two epochs: the test suite runs every study.
- quick: the embedded mnist5k, networks and lengths chosen so that `make all` finishes in about 15
  minutes on a 2-core CPU. The default.
- paper: full MNIST from data/ (CIFAR-10 for placement), the papers' architectures and training
  lengths (Srivastava et al. 2014: max-norm, SGD with momentum ramped from 0.5 to 0.99, decaying
  learning rate). Meant for a GPU or a cluster; see README for its cost.

Studies start from `base(profile)` and list every change and seed explicitly.
"""

from __future__ import annotations

from .config import DataConfig, ModelConfig, RunConfig, TrainConfig
from .errors import ConfigError

_BASES = {
    "smoke": RunConfig(
        profile="smoke",
        data=DataConfig(name="digits"),
        model=ModelConfig(widths=(32, 32)),
        train=TrainConfig(epochs=2, lr=0.05),
    ),
    "quick": RunConfig(
        profile="quick",
        data=DataConfig(name="mnist5k"),
        model=ModelConfig(widths=(256, 256)),
        train=TrainConfig(epochs=15, lr=0.05, lr_decay=0.95),
    ),
    "paper": RunConfig(
        profile="paper",
        data=DataConfig(name="mnist", val_fraction=10_000 / 60_000),
        model=ModelConfig(widths=(1024, 1024, 1024), max_norm=3.0),
        train=TrainConfig(
            epochs=300, lr=0.1, lr_decay=0.99, momentum=0.5, momentum_final=0.99, momentum_ramp_epochs=100, select_on_val=True
        ),
    ),
}


def base(profile: str) -> RunConfig:
    if profile not in _BASES:
        raise ConfigError(f"profile={profile!r} is not known; allowed values: {', '.join(_BASES)}")
    return _BASES[profile]


def pick(profile: str, smoke, quick, paper):
    """The value for this profile: keeps a study's per-profile choices on one line."""
    return {"smoke": smoke, "quick": quick, "paper": paper}[profile]
