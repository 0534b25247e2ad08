"""Frozen, typed run configs with strict overrides and a stable hash.

A run is fully described by a `RunConfig`. Its defaults are the canonical settings; every override
is checked against the field's type and allowed values, and an unknown key is an error that lists
the allowed ones. `config_hash` hashes what determines a run's result; `harness.store.identity.run_id` adds the data's
fingerprint and names the run's folder in the store.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.errors import ConfigError

# Bump when the meaning of a stored run changes (files, metrics, training semantics): old runs are
# then trained again instead of being mistaken for new ones.
# 2: schedules by training progress (per step); 3: early stopping (patience, monitor, check interval),
# stopped_by; 4: dropout masks drawn as uniform < keep, 2-D convolutions in channels_last, train.min_improvement
FORMAT_VERSION = 4

DATASETS = ("mnist5k", "mnist1d", "digits", "mnist", "fashion-mnist", "cifar10")
MODEL_KINDS = ("mlp", "cnn")
ACTIVATIONS = ("relu", "sigmoid", "tanh")
CONVENTIONS = ("inverted", "classic")
OPTIMIZERS = ("sgd", "adam")
LR_SCHEDULES = ("constant", "exponential", "cosine")
MONITORS = ("val_loss", "val_error")
PROFILES = ("quick", "paper", "smoke")
MAX_WIDTH = 1_000_000  # units per hidden layer; beyond this the first weight matrix alone outgrows any one machine


@dataclass(frozen=True)
class DataConfig:
    """Which data and how it is split.

    Datasets without an official test split get a fixed stratified 20% test split (seed 0), so
    every run is scored on the same examples; `split_seed` moves only the validation split and the
    training subsample. None (the default) means the run's own seed: a replicate is a seed of
    everything random, its data split included (Bouthillier et al. 2021), while the test set
    stays the same for every arm and seed. An integer fixes the split across seeds.
    """

    name: str = "mnist5k"
    train_size: int | None = None  # None: the whole training split
    val_fraction: float = 0.1  # share of the non-test data held out for validation
    split_seed: int | None = None  # None: the run's seed (RunConfig.resolved_data)

    def __post_init__(self) -> None:
        _check_finite("data.", self)
        if not (self.name in DATASETS or self.name.endswith(".npz")):
            raise ConfigError(
                f"data.name={self.name!r} is not known; allowed values: {', '.join(DATASETS)}, or the path of a .npz "
                "file (arrays x, y and optionally x_test, y_test)"
            )
        if self.train_size is not None and self.train_size < 1:
            raise ConfigError(
                f"data.train_size={self.train_size}: must be a positive number of examples (or null for all)"
            )
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction={self.val_fraction}: must lie in [0, 1)")
        if self.split_seed is not None:
            _check_seed("data.split_seed", self.split_seed)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and dropout sites.

    MLP: a dropout site before every linear layer: `input`, then `hidden1` ... `hiddenL`.
    CNN (LeNet-style): `input`, `block1`, `block2` (after each conv block), then `hidden1` ... before
    each further fully connected layer. `widths` are the hidden fully connected widths of either.
    `p_drop_hidden` gives one probability per hidden site; a single value applies to all of them.
    """

    kind: str = "mlp"
    widths: tuple[int, ...] = (1024, 1024)
    activation: str = "relu"
    p_drop_input: float = 0.2
    p_drop_hidden: tuple[float, ...] = (0.5,)
    conv_channels: tuple[int, ...] = (32, 64)
    p_drop_conv: tuple[float, ...] = (0.0, 0.0)
    convention: str = "inverted"
    max_norm: float | None = 3.0  # bound on each unit's incoming weight norm; null disables

    def __post_init__(self) -> None:
        _check_finite("model.", self)
        _check_choice("model.kind", self.kind, MODEL_KINDS)
        _check_choice("model.activation", self.activation, ACTIVATIONS)
        _check_choice("model.convention", self.convention, CONVENTIONS)
        for i, w in enumerate(self.widths):
            if w < 1:
                raise ConfigError(f"model.widths[{i}]={w}: widths must be positive integers")
            if w > MAX_WIDTH:
                # a 784 x w input layer alone; training holds about four copies (weights, gradients, momentum, max-norm)
                gib = 4 * 4 * 784 * w / 2**30
                raise ConfigError(
                    f"model.widths[{i}]={w}: a layer this wide needs at least {gib:,.0f} GiB for its first weight "
                    f"matrix in training; widths are limited to {MAX_WIDTH:,}"
                )
        # the hidden-to-hidden matrices, under the same bound as the widest first layer allowed (784 x MAX_WIDTH)
        hidden_weights = sum(a * b for a, b in zip(self.widths, self.widths[1:], strict=False))
        if hidden_weights > 784 * MAX_WIDTH:
            gib = 4 * 4 * hidden_weights / 2**30
            raise ConfigError(
                f"model.widths={list(self.widths)}: the weight matrices between hidden layers hold "
                f"{hidden_weights:,} weights, at least {gib:,.0f} GiB in training (weights, gradients, momentum, "
                "max-norm); keep the product of neighbouring widths, summed over the layers, under "
                f"{784 * MAX_WIDTH:,} (e.g. 4096,4096)"
            )
        if self.kind == "cnn" and not self.widths:
            raise ConfigError("model.widths=[]: a cnn needs at least one hidden fully connected layer")
        _check_prob("model.p_drop_input", self.p_drop_input)
        hidden = tuple(self.p_drop_hidden)
        if len(hidden) == 1 and len(self.widths) != 1:
            hidden = hidden * len(self.widths)  # broadcast, so equivalent configs hash alike
        if self.widths and len(hidden) != len(self.widths):
            raise ConfigError(
                f"model.p_drop_hidden has {len(self.p_drop_hidden)} values for {len(self.widths)} hidden layers: "
                "give one value for all layers or one per layer"
            )
        for i, p in enumerate(hidden):
            _check_prob(f"model.p_drop_hidden[{i}]", p)
        object.__setattr__(self, "p_drop_hidden", hidden)
        if self.kind == "cnn":
            if len(self.conv_channels) != 2 or min(self.conv_channels) < 1:
                raise ConfigError(
                    f"model.conv_channels={list(self.conv_channels)}: a cnn has two conv blocks, give two positive "
                    "channel counts"
                )
            if len(self.p_drop_conv) != 2:
                raise ConfigError(
                    f"model.p_drop_conv={list(self.p_drop_conv)}: give one drop probability per conv block (two)"
                )
            for i, p in enumerate(self.p_drop_conv):
                _check_prob(f"model.p_drop_conv[{i}]", p)
        if self.max_norm is not None and self.max_norm <= 0:
            raise ConfigError(f"model.max_norm={self.max_norm}: must be positive, or null to disable")
        if self.kind == "mlp":  # keys with no effect on an MLP would still change its identity: refused, not ignored
            for key in ("conv_channels", "p_drop_conv"):
                if tuple(getattr(self, key)) != getattr(ModelConfig, key):
                    raise ConfigError(
                        f"model.{key}={list(getattr(self, key))} applies to a cnn's conv blocks only, and model.kind "
                        "is mlp: leave it out (or set model.kind=cnn)"
                    )


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation. `steps`, when set, fixes the number of optimizer steps instead of `epochs`.

    Early stopping: with `select_on_val` the model keeps the weights of the validation check with
    the lowest `monitor` (validation loss or error); with `patience` as well, training stops after
    that many checks without an improvement (`stopped_by` patience), else at the budget
    (`epochs` or `steps`; `stopped_by` budget). Checks come once per epoch, or every
    `check_every_steps` steps rounded up to whole epochs, so that runs on training sets of
    different sizes are checked about equally often in optimizer steps. A check improves only when
    it lowers the monitored value below (1 - `min_improvement`) times the value that last reset the
    patience count (a relative threshold, as torch's ReduceLROnPlateau's `threshold_mode="rel"`):
    late in an exponential schedule the learning rate is so small that validation loss creeps down
    by hundredths of a percent per check, and without a threshold such a run never stops by patience.
    The checkpoint kept is still the lowest value seen.

    Schedules are functions of training progress (step / total steps), updated before every step,
    so a study that fixes `steps` gives every training size the same schedule. They are stated in
    units of `epochs`: `exponential` is lr * lr_decay ** (epochs * progress), the familiar per-epoch
    decay when training by epochs; momentum ramps linearly from `momentum` to `momentum_final` over
    the first `momentum_ramp_epochs / epochs` of progress (Srivastava et al. 2014: 0.5 to 0.99).
    """

    optimizer: str = "sgd"
    lr: float = 0.05
    lr_schedule: str = "exponential"
    lr_decay: float = 0.95
    momentum: float = 0.9
    momentum_final: float | None = None
    momentum_ramp_epochs: int = 0
    weight_decay: float = 0.0
    batch_size: int = 100
    epochs: int = 20
    steps: int | None = None
    select_on_val: bool = False  # keep the checkpoint with the lowest `monitor` on validation
    monitor: str = "val_loss"
    patience: int | None = None  # validation checks without improvement before stopping; null: train to the budget
    check_every_steps: int | None = None  # null: a validation check every epoch
    min_improvement: float = 0.0  # relative drop of the monitored value that resets the patience count

    def __post_init__(self) -> None:
        _check_finite("train.", self)
        _check_choice("train.optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("train.monitor", self.monitor, MONITORS)
        if self.patience is not None and self.patience < 1:
            raise ConfigError(
                f"train.patience={self.patience}: must be a positive number of validation checks, or null to train "
                "to the budget"
            )
        if self.patience is not None and not self.select_on_val:
            raise ConfigError(
                "train.patience needs train.select_on_val=true: early stopping keeps the best checkpoint on validation"
            )
        if not 0 <= self.min_improvement < 1:
            raise ConfigError(
                f"train.min_improvement={self.min_improvement}: must lie in [0, 1) (a relative drop of the monitored "
                "validation value, 0.001 for 0.1%)"
            )
        if self.check_every_steps is not None and self.check_every_steps < 1:
            raise ConfigError(
                f"train.check_every_steps={self.check_every_steps}: must be a positive number of steps, or null for "
                "every epoch"
            )
        _check_choice("train.lr_schedule", self.lr_schedule, LR_SCHEDULES)
        if self.lr <= 0:
            raise ConfigError(f"train.lr={self.lr}: must be positive")
        if not 0 < self.lr_decay <= 1:
            raise ConfigError(f"train.lr_decay={self.lr_decay}: must lie in (0, 1]")
        for name in ("momentum", "momentum_final"):
            m = getattr(self, name)
            if m is not None and not 0 <= m < 1:
                raise ConfigError(f"train.{name}={m}: must lie in [0, 1)")
        if self.momentum_ramp_epochs < 0:
            raise ConfigError(f"train.momentum_ramp_epochs={self.momentum_ramp_epochs}: must be >= 0")
        if self.weight_decay < 0:
            raise ConfigError(f"train.weight_decay={self.weight_decay}: must be >= 0")
        if self.batch_size < 1:
            raise ConfigError(f"train.batch_size={self.batch_size}: must be a positive integer")
        if self.epochs < 1:
            raise ConfigError(f"train.epochs={self.epochs}: must be a positive integer")
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"train.steps={self.steps}: must be positive, or null to train by epochs")


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run's results, and two labels. `experiment` and `profile` say
    which study asked for the run and `device` where it runs; none of them changes what is trained,
    so all three are left out of the run's identity (studies share runs)."""

    experiment: str = "default"
    profile: str = "quick"  # the suite profile that made the run (part of the hash)
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    device: str = "cpu"

    def __post_init__(self) -> None:
        _check_seed("seed", self.seed)
        if not self.experiment or any(c in self.experiment for c in "/\\"):
            raise ConfigError(f"experiment={self.experiment!r}: must be a non-empty name without slashes")
        _check_choice("profile", self.profile, PROFILES)
        if self.data.val_fraction == 0 and self.train.select_on_val:
            raise ConfigError(
                "train.select_on_val=true needs a validation split: set data.val_fraction > 0, or "
                "train.select_on_val=false and train.patience=null"
            )
        if not (self.device == "cpu" or self.device.startswith("cuda") or self.device == "mps"):
            raise ConfigError(f"device={self.device!r}: use cpu, cuda, cuda:N or mps")

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(dataclasses.asdict(self))

    def resolved_data(self) -> DataConfig:
        """The data config with its split seed resolved: the run's seed unless data.split_seed fixes it."""
        return self.data if self.data.split_seed is not None else dataclasses.replace(self.data, split_seed=self.seed)

    def replace(self, **overrides: Any) -> RunConfig:
        """A copy with dotted-key overrides, e.g. ``cfg.replace(**{"model.widths": (512,)})``."""
        return with_overrides(self, overrides)


IDENTITY_EXCLUDES = ("experiment", "profile", "device")  # labels and placement, not what is trained


def config_hash(cfg: RunConfig, data_fingerprint: str) -> str:
    """12 hex digits of the SHA-256 over what determines a run's result: the resolved config
    without its labels (experiment, profile) and device, the harness's training-code version
    (FORMAT_VERSION) and `data_fingerprint`, which says what the data are (`harness.store.identity`
    gives a run's identity with its data's fingerprint; config knows nothing of data)."""
    d = cfg.to_dict()
    for key in IDENTITY_EXCLUDES:
        d.pop(key)
    d["format_version"] = FORMAT_VERSION
    d["data_fingerprint"] = data_fingerprint
    blob = json.dumps(d, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def from_dict(d: Mapping[str, Any], cls: type = RunConfig, prefix: str = "") -> Any:
    """Build a config dataclass from plain JSON-like data, strictly: unknown keys and wrong types
    are errors that name the field and the allowed keys."""
    if not isinstance(d, Mapping):
        raise ConfigError(
            f"{prefix.rstrip('.') or 'config'}: expected a mapping of keys to values, got {type(d).__name__}"
        )
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(d) - set(names))
    if unknown:
        raise ConfigError(
            f"unknown key {prefix}{unknown[0]!s}; allowed keys{' of ' + prefix.rstrip('.') if prefix else ''}: "
            f"{', '.join(names)}"
        )
    kwargs = {}
    for name in names:
        if name not in d:
            continue
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = from_dict(d[name], tp, prefix=f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(d[name], tp, f"{prefix}{name}")
    return cls(**kwargs)


def with_overrides(cfg: RunConfig, overrides: Mapping[str, Any]) -> RunConfig:
    """Apply dotted-key overrides (``{"model.widths": [512, 512], "seed": 3}``) strictly."""
    d = cfg.to_dict()
    hidden = d["model"]["p_drop_hidden"]
    if "model.widths" in overrides and "model.p_drop_hidden" not in overrides and len(set(hidden)) <= 1:
        # a shared hidden rate follows the new depth instead of clashing with it
        d["model"]["p_drop_hidden"] = hidden[:1] or [ModelConfig.p_drop_hidden[0]]
    for key, value in overrides.items():
        parts = key.split(".")
        node = d
        for part in parts[:-1]:
            if part not in node or not isinstance(node[part], dict):
                raise ConfigError(
                    f"unknown key {key}; allowed top-level keys: "
                    f"{', '.join(f.name for f in dataclasses.fields(RunConfig))}"
                )
            node = node[part]
        node[parts[-1]] = _jsonable(value)
    return from_dict(d)


def parse_assignment(text: str) -> tuple[str, Any]:
    """Parse a command-line override ``key=value``; the value is read as JSON when it parses
    (numbers, true/false/null, lists), as a comma-separated list when it has commas, else as text."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: write it as key=value, e.g. model.widths=512,512")
    key, raw = text.split("=", 1)
    key = key.strip()
    try:
        return key, parse_value(raw.strip())
    except ConfigError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def parse_value(raw: str) -> Any:
    """A value of `key=value`: JSON when it parses; nan and inf (any case, signed) as floats, so
    that they are refused as non-finite rather than as text; a list in brackets or with commas,
    element by element (an empty element is an error: `8,,8` is not [8, 8])."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        pass
    if raw.strip().lstrip("+-").lower() in ("nan", "inf", "infinity"):
        return float(raw.strip().lower().replace("infinity", "inf"))
    inner = raw[1:-1] if raw.startswith("[") and raw.endswith("]") else raw
    if "," in inner or inner is not raw:
        parts = [part.strip() for part in inner.split(",")]
        if parts == [""]:
            return []
        empty = [i for i, part in enumerate(parts) if not part]
        if empty:
            raise ConfigError(
                f"value {raw!r}: element {empty[0] + 1} of the list is empty; write the elements separated by single "
                "commas, e.g. 512,512"
            )
        return [parse_value(part) for part in parts]
    return raw


def load_config_file(path: str) -> dict[str, Any]:
    """Read a JSON or TOML config file into a plain mapping (validated by `from_dict`)."""
    import pathlib
    import tomllib

    p = pathlib.Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {path} is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8"
        ) from None
    try:
        if p.suffix == ".toml":
            return tomllib.loads(text)
        return json.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(
            f"config file {path} is not valid {'TOML' if p.suffix == '.toml' else 'JSON'}: {exc}"
        ) from None


def _finite(name: str, value: float) -> float:
    # NaN passes every range check (NaN <= 0 is false), so it is refused by name first
    if not math.isfinite(value):
        raise ConfigError(f"{name}={value}: must be a finite number")
    return value


def _check_finite(prefix: str, obj: Any) -> None:
    """Refuse NaN and infinity in every float field of a config dataclass (also when it is built
    directly, without `from_dict`)."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        values = value if isinstance(value, tuple) else (value,)
        for i, v in enumerate(values):
            if isinstance(v, float):
                _finite(f"{prefix}{f.name}" + (f"[{i}]" if isinstance(value, tuple) else ""), v)


def _check_seed(name: str, seed: int) -> None:
    if not 0 <= seed < 2**63:  # numpy and torch generators take non-negative 64-bit seeds
        raise ConfigError(f"{name}={seed}: a seed must be an integer in [0, 2**63)")


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not known; allowed values: {', '.join(allowed)}")


def _check_prob(name: str, p: float) -> None:
    if not 0.0 <= p < 1.0:
        raise ConfigError(f"{name}={p}: a drop probability must lie in [0, 1)")


def _coerce(value: Any, tp: Any, name: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], name)
    if origin is tuple:
        (inner, _ellipsis) = typing.get_args(tp)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]  # a single number stands for a one-element list
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name}={value!r}: expected a list of {inner.__name__}")
        return tuple(_coerce(v, inner, f"{name}[{i}]") for i, v in enumerate(value))
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return _finite(name, float(value))
    elif tp is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - only reached if a new field type is added without support here
        raise TypeError(f"unsupported config field type {tp}")
    raise ConfigError(f"{name}={value!r}: expected {tp.__name__}, got {type(value).__name__}")


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x
