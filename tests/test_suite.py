"""The whole suite end to end in the smoke profile: every study's runs, tables, figures and report."""

import importlib
from pathlib import Path

import pandas as pd
import pytest

from analysis import report, tables
from analysis.claims import CLAIMS, COLUMNS
from harness.stats.verdicts import MIN_N, VERDICTS
from harness.store.identity import run_id
from harness.store.runs import RunStore
from harness.sweep import studies
from harness.sweep.executors import run_sweep
from harness.sweep.experiment import load_experiment, resolve
from harness.sweep.tuning import arm_key

ROOT = Path(__file__).resolve().parent.parent
STUDY_TABLES = {
    "mc_vs_ws": {"runs", "evaluations", "subnetworks"},
    "keep_sweep": {"runs"},
    "data_size": {"runs"},
    "features": {"runs", "coadaptation", "units", "features", "activation_hist"},
    "coadaptation": {"runs", "coadaptation", "correlation_hist", "corr_sample", "pairs", "units"},
    "rate_grid": {"runs"},
    "placement": {"runs", "evaluations"},
    "exact": {"runs", "evaluations", "subnetworks"},
    "ensemble_vs_dropout": {"runs", "shift", "ood", "entropy_hist", "members"},
    "shift": {"runs", "shift", "ood", "entropy_hist", "members"},
}
FIGURES = studies.figures()  # {figure: the study whose tables it reads}


def test_every_study_of_the_registry_is_checked_here():
    assert list(STUDY_TABLES) == studies.names()


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    out = tmp_path_factory.mktemp("suite")
    mp = pytest.MonkeyPatch()
    mp.setenv("HARNESS_STORE", str(out / "runs"))
    mp.setenv("HARNESS_OUT", str(out))
    store = RunStore(out / "runs")
    for study in STUDY_TABLES:
        exp = load_experiment(ROOT / "experiments" / f"{study}.py", "smoke")
        if exp.tuning_configs():
            assert not run_sweep(exp.tuning_configs(), store).failures
        exp = resolve(exp, store)  # every config at its arm's rate
        summary = run_sweep(exp.configs, store, evaluations=exp.evaluations)
        assert not summary.failures, summary.failures
        assert tables.main([study, "--profile", "smoke"]) == 0
    for fig in FIGURES:
        importlib.import_module(f"analysis.fig_{fig}")
        assert (
            importlib.import_module("analysis.style").run(
                fig, importlib.import_module(f"analysis.fig_{fig}").draw, ["--profile", "smoke"]
            )
            == 0
        )
    assert report.main(["--profile", "smoke"]) == 0
    yield out
    mp.undo()


@pytest.mark.slow
def test_every_study_writes_its_tables(suite):
    for study, names in STUDY_TABLES.items():
        folder = suite / "reports" / "smoke" / "tables" / study
        assert names <= {p.stem for p in folder.glob("*.parquet")}, study
        runs = pd.read_parquet(folder / "runs.parquet")
        assert {
            "run_id",
            "experiment",
            "profile",
            "dataset",
            "widths",
            "p_drop_input",
            "p_drop_hidden",
            "seed",
            "train_size",
            "epochs",
            "status",
            "wall_time_s",
            "train_error",
            "test_error",
        } <= set(runs.columns)
        assert set(runs.profile) == {"smoke"} and set(runs.experiment) == {study}
    ev = pd.read_parquet(suite / "reports" / "smoke" / "tables" / "mc_vs_ws" / "evaluations.parquet")
    assert {"run_id", "mode", "k", "repeat", "metric", "value", "widths", "seed"} <= set(ev.columns)
    co = pd.read_parquet(suite / "reports" / "smoke" / "tables" / "coadaptation" / "coadaptation.parquet")
    assert {"run_id", "layer", "metric", "value", "p_drop_hidden"} <= set(co.columns)


@pytest.mark.slow
def test_every_figure_is_written(suite):
    for fig in FIGURES:
        for ext in ("pdf", "png", "txt"):
            path = suite / "figures" / "smoke" / f"{fig}.{ext}"
            assert path.is_file() and path.stat().st_size > 0, path


@pytest.mark.slow
def test_report_has_claims_tables_and_figures(suite):
    out = suite / "reports" / "smoke"
    claims = pd.read_csv(out / "claims.csv")
    assert set(claims.claim) == set(CLAIMS)
    assert list(claims.columns) == COLUMNS
    assert set(claims.verdict) <= set(VERDICTS)
    tested = claims[claims.test != "descriptive"]
    assert ((tested.n >= MIN_N) | (tested.verdict == "withheld")).all()
    # smoke trains 2 epochs: no arm stops by patience, so the budget rule withholds every tested row and says why
    assert (tested.verdict == "withheld").all() and tested.p_adjusted.isna().all()
    assert tested.reason.str.contains("of the runs of one arm it reads .* stopped by patience", regex=True).all()
    assert (claims[claims.verdict == "inconclusive"].reason.str.len() > 0).all()
    page = (out / "index.html").read_text()
    assert page.count("data:image/png;base64,") == len(FIGURES)
    for study in STUDY_TABLES:
        assert f"id='{study}'" in page
    assert "Setup: data:" in (out / "report.md").read_text()
    assert "ensemble_vs_dropout__methods_on_the_test_split.csv" in {p.name for p in out.glob("*.csv")}
    ood = pd.read_csv(out / "shift__out-of-distribution_detection_against_the_test_split.csv")
    assert {"method", "score", "auroc patches", "aupr permuted", "fpr95 patches", "n"} <= set(ood.columns) and (
        ood.n == 5
    ).all()
    assert ood.filter(like="_ci_").stack().between(0, 1).all()  # intervals of rates are cut to [0, 1]


@pytest.mark.slow
def test_robustness_tables_carry_replicates_and_ensembles(suite):
    folder = suite / "reports" / "smoke" / "tables" / "shift"
    sh = pd.read_parquet(folder / "shift.parquet")
    members = pd.read_parquet(folder / "members.parquet")
    assert (
        sh.replicate.notna().all() and set(sh.replicate) == set(range(5)) and set(sh.group) == {"dropout", "no dropout"}
    )
    ens = sh[sh["mode"] == "ensemble"]
    assert set(ens.run_id) == set(members.ensemble) and set(ens.k) == {2} and len(members) == 20
    # an ensemble's members are the runs of its replicate and group
    runs = pd.read_parquet(folder / "runs.parquet").set_index("run_id")
    for (_, rep), g in members.groupby(["group", "replicate"]):
        assert sorted(runs.loc[g.run_id, "seed"]) == [2 * rep, 2 * rep + 1]


@pytest.mark.parametrize("profile", ["smoke", "quick"])
def test_studies_that_share_a_run_agree_on_its_evaluations(profile):
    """Studies share identical runs; one evaluation kind per run folder means that two studies with
    different settings for the same kind would re-evaluate a shared run in turn, for ever."""
    wanted: dict[str, dict[str, tuple[str, str]]] = {}
    for study in STUDY_TABLES:
        exp = load_experiment(ROOT / "experiments" / f"{study}.py", profile)
        for cfg in exp.configs:  # runs are shared by arm and seed (their rate is the arm's, chosen on validation)
            for kind in exp.evaluations.kinds():
                settings = exp.evaluations.settings_json(kind)
                seen = wanted.setdefault((arm_key(cfg), cfg.seed), {}).setdefault(kind, (study, settings))
                assert seen[1] == settings, f"run {run_id(cfg)}: {kind} settings of {seen[0]} and {study} differ"


@pytest.mark.slow
def test_the_looks_driver_bounds_every_studys_tested_rows(suite):
    """The driver counts the rows of studies not collected yet from `tested_rows_at_most`, before
    their tables exist: the bound holds on every study's tables, and is exact where every row is there."""
    from analysis.claims import tested_rows_at_most

    claims = pd.read_csv(suite / "reports" / "smoke" / "claims.csv")
    tested = claims[claims.test != "descriptive"].groupby("study").size()
    for study in STUDY_TABLES:
        exp = load_experiment(ROOT / "experiments" / f"{study}.py", "smoke", need_data=False)
        bound = tested_rows_at_most(study, exp.configs, bool(exp.skipped))
        assert tested.get(study, 0) <= bound, study
        if study != "shift":  # shift gives fewer where a band holds no shifted set
            assert tested.get(study, 0) == bound, study
