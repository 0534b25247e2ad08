import math

import torch

from harness.config import TrainConfig
from harness.nets.training import evaluate as real_evaluate
from harness.nets.training import learning_rate, momentum_at
from harness.store.identity import run_id
from harness.store.runs import RunStore
from harness.sweep.executors import run_sweep
from harness.sweep.run import execute, load_model


def test_same_config_and_seed_give_bit_identical_weights(tmp_path, tiny_cfg):
    a = execute(tiny_cfg, RunStore(tmp_path / "a"))
    b = execute(tiny_cfg, RunStore(tmp_path / "b"))
    sa, sb = RunStore(tmp_path / "a").load_state(a.run_id), RunStore(tmp_path / "b").load_state(b.run_id)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.row["test_error"] == b.row["test_error"] and a.row["train_loss"] == b.row["train_loss"]
    c = execute(tiny_cfg.replace(seed=1), RunStore(tmp_path / "a"))
    assert not torch.equal(RunStore(tmp_path / "a").load_state(c.run_id)["ops.0.0.weight"], sa["ops.0.0.weight"])


def test_training_learns_digits(store, tiny_cfg):
    rec = execute(tiny_cfg.replace(**{"train.epochs": 8}), store)
    assert rec.row["status"] == "ok"
    assert rec.row["test_error"] < 0.15  # chance is 0.9; 32-unit layers at drop 0.5 learn slowly
    hist = store.load_history(rec.run_id)
    assert list(hist["epoch"]) == list(range(1, 9))
    assert hist["train_error"].iloc[-1] < hist["train_error"].iloc[0]


def test_adam_with_weight_decay_and_a_cosine_schedule_learns(store, tiny_cfg):
    cfg = tiny_cfg.replace(
        **{
            "train.optimizer": "adam",
            "train.lr": 0.01,
            "train.weight_decay": 1e-4,
            "train.lr_schedule": "cosine",
            "train.epochs": 8,
        }
    )
    rec = execute(cfg, store)
    hist = store.load_history(rec.run_id)
    assert rec.row["test_error"] < 0.15 and hist["momentum"].isna().all()
    assert hist["lr"].iloc[0] == 0.01 and hist["lr"].is_monotonic_decreasing


def test_divergence_is_recorded_and_the_sweep_goes_on(store, tiny_cfg):
    bad = tiny_cfg.replace(**{"train.lr": 1e12, "model.max_norm": None, "train.lr_schedule": "constant"})
    summary = run_sweep([bad, tiny_cfg], store)
    assert not summary.failures and len(summary.records) == 2
    row = store.load_row(run_id(bad))
    assert row["status"] == "diverged" and "lower train.lr" in row["message"]
    assert math.isnan(row["test_error"])
    assert store.load_row(run_id(tiny_cfg))["status"] == "ok"


def test_select_on_val_keeps_the_best_epoch(store, tiny_cfg):
    cfg = tiny_cfg.replace(**{"train.select_on_val": True, "train.monitor": "val_error", "train.epochs": 6})
    rec = execute(cfg, store)
    hist = store.load_history(rec.run_id)
    best = int(hist.loc[hist["val_error"].idxmin(), "epoch"])
    assert rec.row["best_epoch"] == best
    _, model, data = load_model(store, rec.run_id)
    from harness.nets.training import evaluate

    assert evaluate(model, data.x_val, data.y_val)[1] == hist["val_error"].min()


def test_steps_override_epochs_and_the_runs_table_records_what_was_trained(store, tiny_cfg):
    rec = execute(tiny_cfg.replace(**{"train.steps": 15, "train.batch_size": 100}), store)
    assert len(store.load_history(rec.run_id)) == 2  # 1,295 examples: 13 steps per epoch
    assert rec.row["epochs"] == 2 and rec.row["steps"] == 15  # not the configured 3 epochs
    plain = execute(tiny_cfg, store)
    assert plain.row["epochs"] == 3 and plain.row["steps"] == 3 * 13


def test_schedules_follow_training_progress():
    cfg = TrainConfig(
        lr=0.1,
        lr_schedule="exponential",
        lr_decay=0.5,
        epochs=10,
        momentum=0.5,
        momentum_final=0.99,
        momentum_ramp_epochs=10,
    )
    assert learning_rate(cfg, 0.2) == 0.1 * 0.25  # two of ten epochs: decayed twice
    assert learning_rate(cfg, 1.0) == 0.1 * 0.5**10
    assert momentum_at(cfg, 0) == 0.5 and abs(momentum_at(cfg, 0.5) - 0.745) < 1e-12 and momentum_at(cfg, 1.0) == 0.99
    cos = TrainConfig(lr=0.1, lr_schedule="cosine")
    assert (
        learning_rate(cos, 0) == 0.1
        and abs(learning_rate(cos, 0.5) - 0.05) < 1e-12
        and abs(learning_rate(cos, 1.0)) < 1e-15
    )


def test_a_fixed_step_budget_gives_every_training_size_the_same_schedule(store, tiny_cfg, monkeypatch):
    """The data_size study: sizes differ, steps do not; the learning rate at each step must not
    depend on how many epochs those steps span (it used to decay per epoch)."""
    import harness.nets.training as training

    seen: dict[int, list[float]] = {}
    original = training.run_epoch

    def spy(model, opt, x, y, perm, batch_size, n_steps, max_norm=None, schedule=None):
        def record(s):
            schedule(s)
            seen.setdefault(len(y), []).append(opt.param_groups[0]["lr"])

        return original(model, opt, x, y, perm, batch_size, n_steps, max_norm, record)

    monkeypatch.setattr(training, "run_epoch", spy)
    for size in (100, 1000):
        execute(tiny_cfg.replace(**{"data.train_size": size, "train.steps": 40}), store)
    small, large = seen[100], seen[1000]
    assert len(small) == len(large) == 40 and small == large
    assert small[0] == tiny_cfg.train.lr and math.isclose(
        small[-1], tiny_cfg.train.lr * tiny_cfg.train.lr_decay ** (tiny_cfg.train.epochs * 39 / 40)
    )


VAL_CURVE = [2.0, 1.5, 1.2, 1.3, 1.25, 1.4, 1.1, 1.0]  # the lowest of the first six checks at epoch 3


def scripted_validation(monkeypatch, curve):
    """Make the validation loss of check i equal curve[i] (the training split is scored for real),
    and keep a copy of the weights at every check."""
    import copy

    from harness.nets import training

    real, seen, states = real_evaluate, [], []

    def fake(model, x, y):
        loss, err = real(model, x, y)
        if len(y) and x.data_ptr() == fake.val_ptr:
            seen.append(len(seen))
            states.append(copy.deepcopy(model.state_dict()))
            return curve[len(seen) - 1], err
        return loss, err

    monkeypatch.setattr(training, "evaluate", fake)
    return fake, states


def test_patience_stops_at_a_known_epoch_and_keeps_the_best_checkpoint(monkeypatch, tiny_cfg):
    from harness.data.datasets import load_dataset
    from harness.nets.models import build_model
    from harness.nets.training import train

    data = load_dataset(tiny_cfg.data)
    fake, states = scripted_validation(monkeypatch, VAL_CURVE)
    fake.val_ptr = data.x_val.data_ptr()
    cfg = tiny_cfg.replace(**{"train.epochs": 20, "train.select_on_val": True, "train.patience": 3})
    torch.manual_seed(0)
    model = build_model(cfg.model, data.input_shape, data.n_classes)
    result = train(model, data, cfg.train, seed=0)
    # checks 4, 5 and 6 do not beat 1.2 (epoch 3): stopped by patience after epoch 6, weights of epoch 3
    assert result.stopped_by == "patience" and result.epochs == 6 and result.best_epoch == 3
    assert list(result.history.val_loss) == VAL_CURVE[:6]
    assert all(torch.equal(v, states[2][k]) for k, v in model.state_dict().items())
    assert not all(torch.equal(v, states[5][k]) for k, v in model.state_dict().items())
    # without patience the same curve runs to the budget and keeps the best of all checks (epoch 8)
    fake, states = scripted_validation(monkeypatch, VAL_CURVE)
    fake.val_ptr = data.x_val.data_ptr()
    torch.manual_seed(0)
    model = build_model(cfg.model, data.input_shape, data.n_classes)
    result = train(model, data, cfg.train.__class__(**{**cfg.train.__dict__, "patience": None, "epochs": 8}), seed=0)
    assert result.stopped_by == "budget" and result.epochs == 8 and result.best_epoch == 8


def test_a_check_must_improve_by_min_improvement_to_reset_patience_but_the_best_checkpoint_is_the_lowest(
    monkeypatch, tiny_cfg
):
    from harness.data.datasets import load_dataset
    from harness.nets.models import build_model
    from harness.nets.training import improves, train

    assert improves(0.9989, 1.0, 0.001) and not improves(0.999, 1.0, 0.001) and improves(0.999, 1.0, 0.0)
    assert improves(5.0, float("inf"), 0.5) and not improves(float("nan"), float("inf"), 0.0)
    # a curve that creeps down by 0.02% per check after epoch 2: every check is a new best
    curve = [2.0, 1.0] + [0.9998**k for k in range(1, 18)]
    data = load_dataset(tiny_cfg.data)
    cfg = tiny_cfg.replace(**{"train.epochs": 19, "train.select_on_val": True, "train.patience": 3})
    for threshold, stopped_by, epochs in [(0.0, "budget", 19), (0.001, "patience", 5)]:
        fake, states = scripted_validation(monkeypatch, curve)
        fake.val_ptr = data.x_val.data_ptr()
        torch.manual_seed(0)
        model = build_model(cfg.model, data.input_shape, data.n_classes)
        result = train(model, data, cfg.replace(**{"train.min_improvement": threshold}).train, seed=0)
        # 0.1%: the reference stays at epoch 2's 1.0 until a check drops below 0.999; checks 3, 4 and 5
        # (0.9998 ** 3 = 0.9994) do not, so the count reaches 3 at epoch 5
        assert (result.stopped_by, result.epochs) == (stopped_by, epochs)
        assert result.best_epoch == epochs  # the checkpoint is the lowest value seen, threshold or not
        assert all(torch.equal(v, states[epochs - 1][k]) for k, v in model.state_dict().items())


def test_checks_every_so_many_steps_in_whole_epochs(tiny_cfg):
    from harness.data.datasets import load_dataset
    from harness.nets.models import build_model
    from harness.nets.training import check_epochs, train

    data = load_dataset(tiny_cfg.data.__class__(name="digits", train_size=100))  # one step per epoch
    cfg = tiny_cfg.train.__class__(steps=12, check_every_steps=5, select_on_val=True)
    assert check_epochs(cfg, 1) == 5 and check_epochs(cfg, 36) == 1 and check_epochs(TrainConfig(), 7) == 1
    torch.manual_seed(0)
    result = train(build_model(tiny_cfg.model, data.input_shape, data.n_classes), data, cfg, seed=0)
    assert list(result.history.epoch) == [5, 10, 12] and list(result.history.steps) == [
        5,
        10,
        12,
    ]  # the last epoch is always checked


def test_early_stopping_options_are_checked():
    import pytest

    from harness.errors import ConfigError

    with pytest.raises(ConfigError, match="train.patience needs train.select_on_val=true"):
        TrainConfig(patience=3)
    with pytest.raises(ConfigError, match="train.monitor='accuracy' is not known"):
        TrainConfig(monitor="accuracy")
    with pytest.raises(ConfigError, match="train.patience=0"):
        TrainConfig(patience=0, select_on_val=True)
    with pytest.raises(ConfigError, match=r"train.min_improvement=-0.1: must lie in \[0, 1\)"):
        TrainConfig(min_improvement=-0.1)


def test_checks_score_a_fixed_training_subsample_and_change_nothing_else(monkeypatch):
    """Scoring 1,000 training examples at each check instead of all 3,600 leaves the training
    itself bit-identical (same weights, same validation columns): only the history's train
    columns come from the subsample, which is stratified and fixed by the seed."""
    from harness.config import DataConfig, ModelConfig
    from harness.data.datasets import load_dataset
    from harness.nets import training
    from harness.nets.models import build_model

    data = load_dataset(DataConfig(name="mnist5k"))
    x, y = training.check_subset(data, seed=3)
    assert len(y) == training.CHECK_TRAIN_EXAMPLES == 1000 and torch.bincount(y).min() >= 90
    assert torch.equal(training.check_subset(data, seed=3)[1], y) and not torch.equal(
        training.check_subset(data, seed=4)[0], x
    )

    def run():
        torch.manual_seed(0)
        model = build_model(ModelConfig(widths=(32,)), data.input_shape, data.n_classes)
        result = training.train(model, data, TrainConfig(epochs=2, lr=0.05, select_on_val=True), seed=3)
        return model, result.history

    sub_model, sub = run()
    monkeypatch.setattr(training, "CHECK_TRAIN_EXAMPLES", 10**9)
    full_model, full = run()
    assert all(
        torch.equal(a, b)
        for a, b in zip(sub_model.state_dict().values(), full_model.state_dict().values(), strict=False)
    )
    assert sub[["val_loss", "val_error", "dropout_loss"]].equals(full[["val_loss", "val_error", "dropout_loss"]])
    assert not sub.train_loss.equals(full.train_loss) and (sub.train_error - full.train_error).abs().max() < 0.05
