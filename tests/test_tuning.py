"""Learning rate per arm, chosen on validation (harness.sweep.tuning)."""

import textwrap

import pytest

from harness.cli import main
from harness.errors import ConfigError
from harness.store.identity import run_id
from harness.sweep.experiment import load_experiment, resolve
from harness.sweep.tuning import TUNING_SEED, arm_key, check_grid, tuning_configs, tuning_table

EXPERIMENT = '''
"""Two arms, two seeds each, tuned over two rates."""
from harness.config import RunConfig

NAME = "tune_t"


def configs(profile):
    b = RunConfig().replace(
        **{"data.name": "digits", "model.widths": [16], "train.epochs": 2, "train.select_on_val": True}
    )
    arms = [{"model.p_drop_input": 0.0, "model.p_drop_hidden": [p]} for p in (0.0, 0.5)]
    return [b.replace(seed=s, **arm) for arm in arms for s in (3, 4)]


def lr_grid(profile):
    return [0.1, 0.001]
'''


@pytest.fixture
def experiment(tmp_path):
    path = tmp_path / "tune_t.py"
    path.write_text(textwrap.dedent(EXPERIMENT))
    return path


def test_each_arm_takes_the_rate_with_the_lowest_validation_loss(experiment, tmp_path, capsys):
    store_dir = tmp_path / "store"
    exp = load_experiment(experiment, "smoke")
    assert exp.lr_grid == (0.001, 0.1)
    tuning = exp.tuning_configs()
    # each arm at the tuning seed, which is none of its replicates, at both rates
    s = TUNING_SEED
    assert sorted((c.seed, c.train.lr, c.model.p_drop_hidden[0]) for c in tuning) == [
        (s, 0.001, 0.0),
        (s, 0.001, 0.5),
        (s, 0.1, 0.0),
        (s, 0.1, 0.5),
    ]
    from harness.store.runs import RunStore

    store = RunStore(store_dir)
    with pytest.raises(ConfigError, match="4 tuning runs"):
        resolve(exp, store)
    assert main(["run", str(experiment), "--profile", "smoke", "--store", str(store_dir), "--executor", "local"]) == 0
    out = capsys.readouterr().out
    assert "tuning the learning rate of each arm over 0.001, 0.1 on validation: 4 runs: 4 computed" in out
    table = tuning_table(exp.configs, exp.lr_grid, store)
    assert len(table) == 4 and table.groupby("arm").chosen.sum().tolist() == [1, 1] and set(table.seed) == {TUNING_SEED}
    for _, arm in table.groupby(
        "arm"
    ):  # the chosen rate has the lowest validation loss of its arm (two epochs: 0.1 beats 0.001)
        assert arm.loc[arm.chosen, "monitored"].item() == arm.val_loss.min() and arm.loc[arm.chosen, "lr"].item() == 0.1
    tuned = resolve(exp, store)
    assert {c.train.lr for c in tuned.configs} == {0.1} and [c.seed for c in tuned.configs] == [3, 4, 3, 4]
    # no replicate is a tuning run: all four replicates were trained after tuning
    assert not set(table.run_id) & {run_id(c) for c in tuned.configs} and "4 runs: 4 computed, 0 cached" in out
    assert main(["status", str(experiment), "--profile", "smoke", "--store", str(store_dir)]) == 0
    assert "4 runs: 4 done" in capsys.readouterr().out


def test_arms_ignore_seed_and_rate_and_grids_are_checked():
    from harness.config import RunConfig

    a = RunConfig()
    assert arm_key(a) == arm_key(a.replace(seed=7, **{"train.lr": 0.3})) != arm_key(a.replace(**{"model.widths": [8]}))
    assert tuning_configs([a], (0.05,)) == []  # one rate: nothing to tune
    assert check_grid([0.1, 0.05, 0.1], "x") == (0.05, 0.1)
    for bad in ([], [0.0], [-1], ["a"], [float("nan")]):
        with pytest.raises(ConfigError, match="lr_grid"):
            check_grid(bad, "experiments/x.py")


def test_the_rate_is_chosen_on_the_mean_over_the_tuning_seeds_with_its_margin():
    import math

    import pandas as pd

    from harness.sweep.tuning import TUNING_COLUMNS, _choose

    rows = []
    for arm, values in enumerate(
        [
            {0.01: [1.0, 1.2, 1.1], 0.03: [0.9, 1.4, 1.2]},  # seed 0 alone would pick 0.03; the mean picks 0.01
            {0.01: [1.0, 1.0, 1.0], 0.03: [1.0, 1.0, 1.0]},  # a tie: the smaller rate
            {0.01: [0.5, math.inf, 0.5], 0.03: [0.9, 0.9, 0.9]},
        ]
    ):  # a diverged run: its rate is never chosen
        for lr, vs in values.items():
            rows += [{"arm": arm, "seed": s, "lr": lr, "monitored": v, "chosen": False} for s, v in enumerate(vs)]
    table = _choose(pd.DataFrame(rows, columns=TUNING_COLUMNS))
    chosen = (
        table[table.chosen]
        .groupby("arm")
        .agg(lr=("lr", "first"), margin=("margin", "first"), se=("margin_se", "first"), n=("seed", "count"))
    )
    assert chosen.lr.tolist() == [0.01, 0.01, 0.03] and (chosen.n == 3).all()
    # the standard error is pooled over the arms whose two rates both finished: arm 0 (differences
    # -0.1, 0.2, 0.1) and arm 1 (0, 0, 0), 2 degrees of freedom each
    pooled = (pd.Series([-0.1, 0.2, 0.1]).var() * 2 + 0.0 * 2) / 4
    assert chosen.margin[0] == pytest.approx(0.2 / 3) and chosen.se.tolist() == pytest.approx(
        [math.sqrt(pooled / 3)] * 3
    )
    assert chosen.margin[1] == 0 and (table[table.chosen].se_df == 4).all()
    assert chosen.margin[2] == math.inf  # the runner-up diverged once: no finite margin
    assert table.loc[table.arm == 0].groupby("lr").mean_monitored.first().to_dict() == pytest.approx(
        {0.01: 1.1, 0.03: 3.5 / 3}
    )


def test_every_arm_is_tuned_on_the_profiles_tuning_seeds(experiment, monkeypatch):
    from harness.sweep import profiles
    from harness.sweep.tuning import tuning_seeds

    monkeypatch.setitem(profiles.TUNING_SEEDS, "smoke", 3)
    exp = load_experiment(experiment, "smoke")
    tuning = exp.tuning_configs()
    assert (
        tuning_seeds("smoke") == (TUNING_SEED, TUNING_SEED + 1, TUNING_SEED + 2) and profiles.TUNING_SEEDS["quick"] == 3
    )
    assert len(tuning) == 2 * 3 * 2 and {c.seed for c in tuning} == set(tuning_seeds("smoke"))
    # each tuning seed has its own split, like every seed
    assert len({c.resolved_data().split_seed for c in tuning}) == 3


def test_a_margin_inside_the_tuning_seeds_noise_is_a_tie_that_goes_to_the_smaller_rate():
    """Float rounding (a thread count) moves a run's loss by a few thousandths: a choice whose
    margin is within TIE_SE standard errors is made by the stated rule, not by the rounding."""
    import math

    import pandas as pd

    from harness.sweep.tuning import TIE_SE, TUNING_COLUMNS, _choose

    def chosen(values):
        rows = [
            {"arm": 0, "seed": s, "lr": lr, "monitored": v, "chosen": False}
            for lr, vs in values.items()
            for s, v in enumerate(vs)
        ]
        t = _choose(pd.DataFrame(rows, columns=TUNING_COLUMNS))
        return t[t.chosen].iloc[0]

    # 0.05 is lower by 0.002 on average, with per-seed differences of sd 0.01 (se 0.0058): a tie
    noisy = chosen({0.02: [0.150, 0.150, 0.150], 0.05: [0.138, 0.148, 0.158 - 0.000]})
    diffs = pd.Series([0.012, 0.002, -0.008])
    assert diffs.mean() < TIE_SE * diffs.std() / math.sqrt(3)
    assert noisy.lr == 0.02 and noisy.tie and noisy.margin == pytest.approx(-0.002)
    # the same rounding-sized jitter either way gives the same choice
    for jitter in (-0.001, 0.001):
        assert chosen({0.02: [0.150 + jitter, 0.150, 0.150], 0.05: [0.138, 0.148, 0.158]}).lr == 0.02
    # a margin of several standard errors is a choice, not a tie
    clear = chosen({0.02: [0.150, 0.151, 0.149], 0.05: [0.140, 0.140, 0.139]})
    assert clear.lr == 0.05 and not clear.tie and clear.margin > 3 * clear.margin_se


def test_the_tie_band_pools_the_seed_noise_of_a_studys_arms():
    """Three tuning seeds give an arm's own standard error 2 degrees of freedom: rounding that
    happens to make its three differences alike shrinks it, and a margin inside the seeds' noise
    reads as a clear choice. Pooled over the study's arms, the band is the same on both sides."""
    import math

    import pandas as pd

    from harness.sweep.tuning import TIE_SE, TUNING_COLUMNS, _choose, _pooled_variance

    def table(values):
        rows = [
            {"arm": arm, "seed": s, "lr": lr, "monitored": v, "chosen": False}
            for arm, arm_values in enumerate(values)
            for lr, vs in arm_values.items()
            for s, v in enumerate(vs)
        ]
        return _choose(pd.DataFrame(rows, columns=TUNING_COLUMNS))

    # arm 0: 0.03 lower by 0.004 on every seed, give or take 0.0005: alone, 0.004 is about 14 of its
    # own standard errors; three other arms show the per-seed differences spread by 0.01
    alike = {0.01: [0.150, 0.150, 0.150], 0.03: [0.1455, 0.146, 0.1465]}
    others = [{0.01: [0.20, 0.20, 0.20], 0.03: [0.21 + e for e in (-0.01, 0.0, 0.01)]} for _ in range(3)]
    alone = table([alike])
    assert alone[alone.chosen].lr.iloc[0] == 0.03 and not alone[alone.chosen].tie.iloc[0]
    pooled = table([alike] + others)
    first = pooled[pooled.chosen & (pooled.arm == 0)].iloc[0]
    variance, dof = _pooled_variance(pooled)
    assert dof == 8 and variance == pytest.approx((0.0005**2 * 2 + 3 * 0.01**2 * 2) / 8)
    assert first.margin_se == pytest.approx(math.sqrt(variance / 3)) and first.se_df == 8
    assert (
        first.lr == 0.01 and first.tie and -first.margin < TIE_SE * first.margin_se
    )  # inside the pooled band: the smaller rate
    # the other arms keep their lower-mean rate
    assert (pooled[pooled.chosen & (pooled.arm > 0)].lr == 0.01).all()
    # an arm whose runner-up diverged on a seed gives no degrees of freedom; one seed gives none at all
    assert _pooled_variance(table([{0.01: [0.1, math.inf, 0.1], 0.03: [0.2, 0.2, 0.2]}]))[1] == 0
    single = table([{0.01: [0.150], 0.03: [0.149]}])
    assert single[single.chosen].lr.iloc[0] == 0.03 and math.isnan(single[single.chosen].margin_se.iloc[0])
