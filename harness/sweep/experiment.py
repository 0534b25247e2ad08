"""Experiment files: Python files under experiments/ that list their run configs, seeds included.

An experiment file defines ``NAME`` (a string), ``configs(profile: str) -> list[RunConfig]`` and,
optionally, ``evaluations(profile: str) -> Evaluations``: what to measure on each finished run, and
``ensembles(profile: str, runs=None) -> list[Ensemble]``: deep ensembles of `runs` (the configs as loaded,
moved onto a dataset or cut down for a check; `harness.inference.ensembles`),
evaluated from their members' stored predictions when the study's tables are collected, and
``lr_grid(profile: str) -> list[float]``: the learning rates each arm is tuned over on validation
(`harness.sweep.tuning`; default: the profile's `harness.sweep.profiles.lr_grid`). The configs' own rates are
replaced by each arm's choice: `resolve` gives the tuned experiment once the tuning runs are stored.
The configs list the seeds of the profile's largest look (`harness.sweep.profiles.replicates`); a study
runs in looks (`harness.sweep.profiles.LOOKS`, `analysis.looks`), and `load_experiment(..., look=K)` keeps
the runs of the first K looks: those whose replicate is below the K-th look's n. A run's replicate
is its seed, or what the file's optional ``replicate(profile: str, cfg) -> int`` says (an ensemble
of M seeds is one replicate).
Every config's ``profile`` field is set to the profile it was made for, so profiles never share runs.
"""

from __future__ import annotations

import importlib.util
import inspect
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType

from harness.config import PROFILES, RunConfig
from harness.errors import ConfigError
from harness.inference.ensembles import Ensemble
from harness.store.identity import design_key, run_id
from harness.sweep.evaluations import Evaluations
from harness.sweep.profiles import lr_grid as profile_lr_grid
from harness.sweep.setting import Setting, adapt, cap_sizes, check_caps, checking
from harness.sweep.tuning import apply_rates, check_grid, chosen_rates, remap_ensembles, tuning_configs


@dataclass
class Experiment:
    name: str
    path: Path
    profile: str
    configs: list[RunConfig]
    evaluations: Evaluations
    doc: str
    ensembles: list[Ensemble] = field(default_factory=list)
    lr_grid: tuple[float, ...] = ()
    tuned: bool = False  # configs and ensembles carry each arm's chosen rate (`resolve`)
    dataset: str | None = None  # the setting's dataset (`harness.sweep.setting`); None: the study's own data
    notes: list[str] = field(default_factory=list)  # how the study was adapted to the dataset, in words
    skipped: str | None = None  # why the study cannot run on this dataset (then it has no configs)
    look: int | None = None  # the runs of the first `look` looks (None: every listed run)
    replicates: int = 0  # the replicates the configs hold (0: the study lists none with a replicate index)
    replicate_of: Callable[[RunConfig], int] | None = field(
        default=None, repr=False, compare=False
    )  # cfg -> its replicate index

    def tuning_configs(self) -> list[RunConfig]:
        """The runs that choose each arm's learning rate (none with a grid of one rate)."""
        return tuning_configs(self.configs, self.lr_grid)


def resolve(exp: Experiment, store) -> Experiment:
    """The experiment with every config (and ensemble member) at its arm's learning rate, chosen
    on validation from the tuning runs in `store` (`harness.sweep.tuning`); a ConfigError lists the
    tuning runs it lacks."""
    if exp.tuned:
        return exp
    configs = apply_rates(exp.configs, chosen_rates(exp.configs, exp.lr_grid, store))
    return replace(exp, configs=configs, ensembles=remap_ensembles(exp.ensembles, exp.configs, configs), tuned=True)


def load_experiment(
    path: str | Path,
    profile: str = "quick",
    dataset: str | None = None,
    need_data: bool = True,
    look: int | None = None,
) -> Experiment:
    """The study an experiment file describes, for `profile`, on `dataset` (None: the file's own
    data; else every config moved onto it by `harness.sweep.setting.adapt`, which says how in `notes`).
    With `need_data=False` no data file is read (a plan before the data are in place): ensembles,
    which name their members by run identity, are left out. `look=K` keeps the runs of the first K
    of the profile's looks (None: every listed run). Under `make paper-check`
    (`harness.sweep.setting.checking`) every study is cut down by `harness.sweep.setting.check_caps`."""
    path = Path(path)
    _check_file(path)
    if profile not in PROFILES:
        raise ConfigError(f"profile={profile!r} is not known; allowed values: {', '.join(PROFILES)}")
    dataset = Setting(profile, dataset).dataset
    module = _guarded(path, "importing it", _import, path)
    name, configs = _file_configs(path, module, profile)
    evals = _file_evaluations(path, module, profile)
    if len({design_key(c) for c in configs}) != len(configs):
        raise ConfigError(f"{path}: configs() lists the same run twice; vary the seed or a setting")
    configs, evals, notes, skipped = _in_setting(configs, evals, dataset, need_data)
    replicate_of = _replicate_function(path, module, profile)
    if look is not None:
        configs = in_looks(configs, replicate_of, profile, look, str(path))
    n_replicates = len({replicate_of(c) for c in configs})
    ensembles = _file_ensembles(path, module, profile, configs) if need_data and not skipped else []
    if ensembles and evals.robustness is None:
        raise ConfigError(
            f"{path}: ensembles are evaluated from their members' predictions: evaluations() must request robustness"
        )
    grid = (
        _guarded(path, f"lr_grid({profile!r})", module.lr_grid, profile)
        if callable(getattr(module, "lr_grid", None))
        else profile_lr_grid(profile)
    )
    return Experiment(
        name,
        path,
        profile,
        configs,
        evals,
        (module.__doc__ or "").strip(),
        ensembles,
        check_grid(grid, f"{path}"),
        dataset=dataset,
        notes=notes,
        skipped=skipped,
        look=look,
        replicates=n_replicates,
        replicate_of=replicate_of,
    )


def _check_file(path: Path) -> None:
    """Refuse a path that is not an experiment file (a folder, a missing file, not Python), naming
    the experiments there are."""
    here = Path(__file__).resolve().parents[2] / "experiments"
    known = sorted(p.name for p in here.glob("*.py") if not p.name.startswith("_"))
    if path.is_dir():
        raise ConfigError(
            f"{path} is a folder, not an experiment file: name one file, e.g. "
            f"{path / known[0] if known else 'experiments/STUDY.py'}; experiments: {', '.join(known)}"
        )
    if not path.is_file():
        raise ConfigError(f"experiment file {path} does not exist; experiments: {', '.join(known)}")
    if path.suffix != ".py":
        raise ConfigError(
            f"{path} is not an experiment file: an experiment file is Python (.py) that defines NAME and "
            f"configs(profile); experiments: {', '.join(known)}"
        )


def _file_configs(path: Path, module: ModuleType, profile: str) -> tuple[str, list[RunConfig]]:
    """The file's NAME and its configs(profile), each config marked with the profile and the study."""
    name = getattr(module, "NAME", None)
    make = getattr(module, "configs", None)
    if not isinstance(name, str) or not callable(make):
        raise ConfigError(f"{path} must define NAME (a string) and configs(profile) returning a list of RunConfig")
    configs = _listed(
        path, f"configs({profile!r})", _guarded(path, f"configs({profile!r})", make, profile), "RunConfig"
    )
    bad = [c for c in configs if not isinstance(c, RunConfig)]
    if bad:
        raise ConfigError(f"{path}: configs() returned {type(bad[0]).__name__}, expected RunConfig")
    return name, [c.replace(profile=profile, experiment=name) for c in configs]


def _file_evaluations(path: Path, module: ModuleType, profile: str) -> Evaluations:
    """The file's evaluations(profile), or none requested when it defines none."""
    evals = (
        _guarded(path, f"evaluations({profile!r})", module.evaluations, profile)
        if callable(getattr(module, "evaluations", None))
        else Evaluations()
    )
    if not isinstance(evals, Evaluations):  # refused here, before a sweep could record it as a failed run
        raise ConfigError(
            f"{path}: evaluations({profile!r}) returned {type(evals).__name__}, expected "
            "harness.sweep.evaluations.Evaluations (e.g. Evaluations(mc=MCSettings())); fix the experiment file"
        )
    return evals


def _in_setting(
    configs: list[RunConfig], evals: Evaluations, dataset: str | None, need_data: bool
) -> tuple[list[RunConfig], Evaluations, list[str], str | None]:
    """The configs and evaluations moved onto `dataset` (None: left on the file's own) and, under
    `make paper-check`, cut down; with the notes that say how, and why the study cannot run on the
    dataset (None: it can). Configs that became the same run are listed once."""
    notes, skipped = [], None
    if dataset is not None:
        moved = adapt(configs, evals, dataset, files=need_data)
        configs, evals, notes, skipped = moved.configs, moved.evaluations, moved.notes, moved.skipped
    if checking():
        configs, evals, said = check_caps(configs, evals)
        if dataset is None:  # stand-in files hold a few hundred examples
            configs, capped = cap_sizes(configs, files=need_data)
            said += capped
        notes += said
    return _distinct(configs), evals, notes, skipped


def _file_ensembles(path: Path, module: ModuleType, profile: str, configs: list[RunConfig]) -> list[Ensemble]:
    """The file's ensembles(profile, runs) of `configs` (none when it defines none); every member
    must be one of the configs."""
    if not callable(getattr(module, "ensembles", None)):
        return []
    # ensembles(profile, runs) groups the configs it is given (moved onto a dataset, cut down for a check)
    takes_runs = len(inspect.signature(module.ensembles).parameters) > 1
    args = (profile, configs) if takes_runs else (profile,)
    ensembles = _listed(
        path,
        f"ensembles({profile!r})",
        _guarded(path, f"ensembles({profile!r})", module.ensembles, *args),
        "harness.inference.ensembles.Ensemble",
    )
    ids = {run_id(c) for c in configs}
    for e in ensembles:
        if not isinstance(e, Ensemble):
            raise ConfigError(
                f"{path}: ensembles() returned {type(e).__name__}, expected harness.inference.ensembles.Ensemble"
            )
        stray = sorted(set(e.run_ids) - ids)
        if stray:
            raise ConfigError(
                f"{path}: ensemble {e.name} has member {stray[0]}, which configs() does not list; build ensembles "
                "from the configs"
            )
    return ensembles


def _replicate_function(path: Path, module: ModuleType, profile: str):
    """cfg -> its replicate index: the file's replicate(profile, cfg), else the seed."""
    fn = getattr(module, "replicate", None)
    if fn is None:
        return lambda cfg: cfg.seed
    if not callable(fn):
        raise ConfigError(
            f"{path}: replicate must be a function replicate(profile, cfg) -> int, got {type(fn).__name__}"
        )

    def replicate_of(cfg: RunConfig) -> int:
        r = _guarded(path, f"replicate({profile!r}, cfg)", fn, profile, cfg)
        if isinstance(r, bool) or not isinstance(r, int) or r < 0:
            raise ConfigError(f"{path}: replicate({profile!r}, cfg) returned {r!r}, expected a non-negative int")
        return r

    return replicate_of


def in_looks(configs: list[RunConfig], replicate_of, profile: str, look: int, where: str) -> list[RunConfig]:
    """The configs of the first `look` looks of the profile: replicate index below that look's n."""
    from harness.sweep.profiles import looks

    design = looks(profile)
    if isinstance(look, bool) or not isinstance(look, int) or not 1 <= look <= len(design):
        has = (
            f"one look ({design[0]} replicates): give 1"
            if len(design) == 1
            else f"{len(design)} looks ({', '.join(map(str, design))} replicates): give 1 to {len(design)}"
        )
        raise ConfigError(f"{where}: look={look!r}; the {profile} profile has {has}")
    return [c for c in configs if replicate_of(c) < design[look - 1]]


def _distinct(configs: list[RunConfig]) -> list[RunConfig]:
    """Configs in order, each once: capping training sizes to a small dataset can make two the same."""
    seen: set[str] = set()
    out = []
    for c in configs:
        key = design_key(c)
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out


def sibling(path: str | Path, name: str) -> ModuleType:
    """Another experiment file of the same folder, imported: a study that analyses the runs of
    another one takes its configs from it instead of copying them."""
    target = Path(path).resolve().with_name(f"{name}.py")
    if not target.is_file():
        raise ConfigError(f"{path}: its sibling experiment file {target} does not exist")
    return _import(target)


def _guarded(path: Path, what: str, fn, *args):
    """Call fn(*args) for an experiment file; its own errors become a message that names the file,
    the step and the line, instead of a traceback (a ConfigError from a bad config passes as is)."""
    try:
        return fn(*args)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {what}: {exc}") from None
    except SystemExit as exc:  # an experiment file decides nothing about the process: its exit is refused, not obeyed
        raise ConfigError(
            f"{path}: {what} called sys.exit({exc.code!r}); an experiment file must not exit: remove the call, or "
            "raise an exception with a message"
        ) from None
    except SyntaxError as exc:
        raise ConfigError(f"{path}: syntax error at line {exc.lineno}: {exc.msg}; fix the experiment file") from None
    except Exception as exc:
        tb = traceback.extract_tb(exc.__traceback__)
        line = next((f" (line {f.lineno})" for f in reversed(tb) if Path(f.filename).resolve() == path.resolve()), "")
        raise ConfigError(f"{path}: {what} raised {type(exc).__name__}: {exc}{line}; fix the experiment file") from None


def _listed(path: Path, what: str, value, expected: str) -> list:
    """What an experiment file's function returned, as a list; None, a number or a string is refused
    by name (a list, tuple or generator of `expected` is what it must return)."""
    if value is None or isinstance(value, (str, bytes, dict)) or not hasattr(value, "__iter__"):
        hint = " (does the function lack a `return`?)" if value is None else ""
        raise ConfigError(
            f"{path}: {what} returned {type(value).__name__}, expected a list of {expected}; fix the experiment "
            f"file{hint}"
        )
    return _guarded(path, what, list, value)  # a generator runs the file's code while it is listed


def _import(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"experiments.{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
