import json

import pytest

from harness.config import (
    DataConfig,
    ModelConfig,
    RunConfig,
    config_hash,
    from_dict,
    parse_assignment,
    with_overrides,
)
from harness.errors import ConfigError


def test_defaults_are_valid_and_resolved():
    cfg = RunConfig()
    assert cfg.model.p_drop_hidden == (0.5, 0.5)  # one value broadcast to every hidden layer
    assert from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_broadcast_and_explicit_rates_hash_alike():
    a = RunConfig(model=ModelConfig(widths=(8, 8), p_drop_hidden=(0.5,)))
    b = RunConfig(model=ModelConfig(widths=(8, 8), p_drop_hidden=(0.5, 0.5)))
    assert a == b and config_hash(a, "fp") == config_hash(b, "fp")


def test_hash_ignores_device_but_not_seed():
    a = RunConfig()
    assert config_hash(a, "fp") == config_hash(a.replace(device="cuda"), "fp")
    assert config_hash(a, "fp") != config_hash(a.replace(seed=1), "fp")
    assert len(config_hash(a, "fp")) == 12


def test_changing_depth_keeps_a_shared_hidden_rate():
    cfg = RunConfig().replace(**{"model.widths": [16, 16, 16]})
    assert cfg.model.p_drop_hidden == (0.5, 0.5, 0.5)


@pytest.mark.parametrize(
    "overrides, needle",
    [
        ({"model.p_drop_input": 1.0}, "model.p_drop_input=1.0: a drop probability must lie in [0, 1)"),
        ({"model.p_drop_hidden": [0.5, -0.1]}, "model.p_drop_hidden[1]=-0.1"),
        ({"model.widths": [64, -3]}, "model.widths[1]=-3"),
        ({"data.name": "imagenet"}, "allowed values: mnist5k, mnist1d, digits, mnist, fashion-mnist, cifar10"),
        ({"model.activation": "gelu"}, "allowed values: relu, sigmoid, tanh"),
        ({"model.widht": [3]}, "unknown key model.widht; allowed keys of model: kind, widths"),
        ({"train.epochs": "ten"}, "train.epochs='ten': expected int, got str"),
        ({"train.epochs": 2.5}, "expected int, got float"),
        ({"model.p_drop_hidden": [0.5, 0.5, 0.5]}, "3 values for 2 hidden layers"),
        ({"data.train_size": 0}, "data.train_size=0"),
    ],
)
def test_bad_values_name_the_field_and_the_fix(overrides, needle):
    with pytest.raises(ConfigError) as exc:
        with_overrides(RunConfig(), overrides)
    assert needle in str(exc.value)


def test_unknown_top_level_key_lists_allowed_keys():
    with pytest.raises(ConfigError, match="allowed keys: experiment, profile, seed, data, model, train, device"):
        from_dict({"sed": 1})


def test_parse_assignment_reads_json_lists_and_text():
    assert parse_assignment("model.widths=512,512") == ("model.widths", [512, 512])
    assert parse_assignment("model.max_norm=null") == ("model.max_norm", None)
    assert parse_assignment("data.name=digits") == ("data.name", "digits")
    assert parse_assignment("train.select_on_val=true") == ("train.select_on_val", True)
    with pytest.raises(ConfigError, match="key=value"):
        parse_assignment("model.widths")


def test_cross_field_checks():
    with pytest.raises(ConfigError, match="needs a validation split"):
        RunConfig().replace(**{"data.val_fraction": 0.0, "train.select_on_val": True})
    assert DataConfig(val_fraction=0.0).val_fraction == 0.0


def test_config_knows_nothing_of_data():
    """Run identity lives where config and data meet (harness.store.identity): importing the config
    module imports no data module, and a user's .npz path is a valid dataset name."""
    import subprocess
    import sys

    code = "import sys, harness.config; print(sorted(m for m in sys.modules if m.startswith('harness.')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "harness.data.datasets" not in out and "harness.config" in out
    assert DataConfig(name="/tmp/mine.npz").name == "/tmp/mine.npz"
    with pytest.raises(ConfigError, match=r"or the path of a \.npz file"):
        DataConfig(name="mine.csv")
