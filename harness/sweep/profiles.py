"""Suite profiles: the shared starting point of every study's configs.

- smoke: scikit-learn digits, tiny networks, two epochs: the test suite runs every study.
- quick: the embedded mnist5k, networks chosen so that `make all` finishes within 40 minutes on
  a 2-core CPU. The default. Every run keeps its best checkpoint on validation loss and stops
  after 8 epochs without an improvement of more than 0.1% (budget 100 epochs, 2x on MNIST-1D and
  digits: BUDGET_SCALE); each arm's learning rate is chosen on validation from LR_GRIDS.
- paper: full MNIST from data/ (CIFAR-10 for placement), the papers' architectures and training
  lengths (Srivastava et al. 2014: max-norm, SGD with momentum ramped from 0.5 to 0.99, decaying
  learning rate). Meant for a GPU or a cluster; see README for its cost.

Studies start from `base(profile)` and list every change and seed explicitly.
"""

from __future__ import annotations

from harness.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from harness.errors import ConfigError

_BASES = {
    "smoke": RunConfig(
        profile="smoke",
        data=DataConfig(name="digits"),
        model=ModelConfig(widths=(32, 32)),
        train=TrainConfig(epochs=2, lr=0.05, select_on_val=True, patience=2),
    ),
    "quick": RunConfig(
        profile="quick",
        data=DataConfig(name="mnist5k"),
        model=ModelConfig(widths=(256, 256)),
        # trained to its own best: the checkpoint with the lowest validation loss, stopped after 8
        # epochs without improvement; 100 epochs is a budget that most runs do not reach (claims whose arms hit it are
        # withheld). An improvement is a drop of more than 0.1%: the learning rate is then so small (0.95 ** epoch)
        # that, without the threshold, 13% of the digits runs crept down by hundredths of a percent per check to the
        # budget
        train=TrainConfig(epochs=100, lr=0.05, lr_decay=0.95, select_on_val=True, patience=8, min_improvement=0.001),
    ),
    "paper": RunConfig(
        profile="paper",
        data=DataConfig(name="mnist", val_fraction=10_000 / 60_000),
        model=ModelConfig(widths=(1024, 1024, 1024), max_norm=3.0),
        train=TrainConfig(
            epochs=300,
            lr=0.1,
            lr_decay=0.99,
            momentum=0.5,
            momentum_final=0.99,
            momentum_ramp_epochs=100,
            select_on_val=True,
            patience=50,
        ),
    ),
}


# A setting's training budget (epochs, or steps) as a multiple of the profile's, per dataset
# (`harness.sweep.setting.adapt`). Schedules stay the same per step: only runs that would have hit the
# budget train longer. The pilot: the quick store of the code before (`make all` on each dataset,
# 100 epochs, placement 60): every MNIST-1D CNN run reached the budget still improving by 4 to 18%
# of its validation loss over its last 20 epochs, and 13% of the digits runs reached it too.
BUDGET_SCALE = {"quick": {"mnist1d": 2, "digits": 2}}


def budget_scale(profile: str, dataset: str) -> int:
    """The multiple of the profile's training budgets that runs on `dataset` get (1: the profile's own)."""
    return BUDGET_SCALE.get(profile, {}).get(dataset, 1)


def base(profile: str) -> RunConfig:
    if profile not in _BASES:
        raise ConfigError(f"profile={profile!r} is not known; allowed values: {', '.join(_BASES)}")
    return _BASES[profile]


# Each arm's learning rate is chosen on validation from this grid (`harness.sweep.tuning`): no single
# rate suits every arm (at 0.05 a net keeping 20% of its hidden units is unstable; at 0.02 a net
# without dropout is undertrained). One rate: nothing is tuned.
LR_GRIDS = {"smoke": (0.05,), "quick": (0.02, 0.05), "paper": (0.03, 0.1)}


# Each arm's rate is chosen on the mean validation loss over this many tuning seeds (`harness.sweep.tuning`):
# one seed let float rounding pick between rates whose losses differed by less than a seed's noise.
TUNING_SEEDS = {"smoke": 1, "quick": 3, "paper": 2}


# Every study runs in looks of this many replicates (`harness.stats.sequential`): a study gets the next look's
# seeds only while one of its claim rows is undecided and could still be decided at the largest n
# (`analysis.looks`). Experiment files list the largest n's seeds (`replicates`); `harness run
# --look K` runs the first K looks' replicates. smoke: one look (the test suite checks the looks on
# constructed values and a two-look toy study). quick stops at 15: at (5, 10, 20) `make all` took 46.6
# min on a 2-core CPU against its 40-minute budget (fa5ced0), and its look at 20 cost about 15 of
# them; at (5, 10, 15) it took 34 min 25 s (7288419), 36 min 3 s (cd47f81) and 28 min 34 s (74525cc). The paper
# profile keeps 20.
LOOKS = {"smoke": (5,), "quick": (5, 10, 15), "paper": (5, 10, 20)}


def looks(profile: str) -> tuple[int, ...]:
    base(profile)  # an unknown profile is refused by name
    return LOOKS[profile]


def replicates(profile: str) -> list[int]:
    """The replicate indices an experiment lists: 0 ... n_K - 1 for the profile's largest look."""
    return list(range(looks(profile)[-1]))


def lr_grid(profile: str) -> tuple[float, ...]:
    base(profile)  # an unknown profile is refused by name
    return LR_GRIDS[profile]


def pick(profile: str, smoke, quick, paper):
    """The value for this profile: keeps a study's per-profile choices on one line."""
    return {"smoke": smoke, "quick": quick, "paper": paper}[profile]
