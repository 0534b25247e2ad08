"""Generality across settings on hand-made tables with known answers: one Holm family over the
claims of every setting, consistency labels for known verdict patterns, the files it writes; and
the analysis package's imports without a circle."""

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_analysis import SEEDS, data_size_runs, grid_runs

from analysis import generality
from analysis.claims import COLUMNS, claims_table, holm_family_size
from analysis.consistency import (
    DEPENDENT,
    DESCRIPTIVE,
    EVERY,
    NEGLIGIBLE,
    NO_VERDICT,
    NOT_SHOWN,
    WHERE_TESTED,
    consistency,
    pooled_table,
)
from analysis.generality import GENERALITY_COLUMNS, generality_table
from analysis.tables import write

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = ["quick", "quick-mnist1d", "quick-digits"]


def placement(noise=(0.001, -0.002, 0.0005, 0.0, 0.0008)):
    """C7's evaluations: conv dropout worse than FC-only dropout by `noise` per seed (inconclusive)."""
    return pd.DataFrame(
        [
            ("weight_scaled", "error", sites, 0.5, s, v)
            for s, e in zip(SEEDS, noise, strict=False)
            for sites, v in (
                ("input=0,block1=0.25,block2=0.25,hidden1=0.5", 0.03 + s / 1000 + e),
                ("input=0,block1=0,block2=0,hidden1=0.5", 0.03 + s / 1000),
            )
        ],
        columns=["mode", "metric", "p_drop_sites", "p_drop_hidden", "seed", "value"],
    )


def three_settings() -> dict[str, dict[str, dict[str, pd.DataFrame]]]:
    """quick: data_size helps (C4, C4b, C8 supported), placement inconclusive; quick-mnist1d:
    dropout hurts (C4, C8 contradicted, C4b supported), rate grid with C5 supported; quick-digits:
    data_size as quick, placement skipped. Tested rows: 4 + 4 + 3."""
    good = data_size_runs(0.05, 0.01, jitter=0.002)
    hurt = data_size_runs(-0.05, -0.06, wide_bonus=-0.01, jitter=0.002)
    return {
        "quick": {"data_size": {"runs": good}, "placement": {"evaluations": placement()}},
        "quick-mnist1d": {
            "data_size": {"runs": hurt},
            "rate_grid": {"runs": grid_runs(test_penalty_at_best=0.02, jitter=0.001)},
        },
        "quick-digits": {"data_size": {"runs": good}},
    }


@pytest.fixture(scope="module")
def table():
    return generality_table(
        three_settings(), {"quick": "mnist5k", "quick-mnist1d": "mnist1d", "quick-digits": "digits"}
    )


def test_holm_covers_the_tested_rows_of_every_setting(table):
    tables = three_settings()
    own = {s: claims_table(t) for s, t in tables.items()}
    assert [holm_family_size(own[s]) for s in SETTINGS] == [4, 4, 3]
    assert holm_family_size(table) == 11 and len(table) == sum(len(t) for t in own.values())
    tested = table[table.test != "descriptive"]
    p = tested.p_value.to_numpy()
    m = len(p)
    assert m == 11
    order = np.argsort(p)
    by_hand = np.empty(m)
    by_hand[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))  # Holm, step down
    np.testing.assert_allclose(tested.p_adjusted.to_numpy(), by_hand, rtol=1e-12)
    # the raw p-values are each setting's own; only the adjustment differs, and never downwards
    for s in SETTINGS:
        mine = tested[tested.setting == s].set_index("key")
        theirs = own[s][own[s].test != "descriptive"].set_index("statistic")
        assert len(mine) == len(theirs)
        np.testing.assert_allclose(np.sort(mine.p_value), np.sort(theirs.p_value), rtol=1e-12)
        assert (np.sort(mine.p_adjusted) >= np.sort(theirs.p_adjusted)).all()


def test_rows_carry_the_claims_columns_their_setting_and_dataset(table):
    assert list(table.columns) == GENERALITY_COLUMNS and set(COLUMNS) < set(table.columns)
    assert table.groupby("setting").dataset.first().to_dict() == {
        "quick": "mnist5k",
        "quick-mnist1d": "mnist1d",
        "quick-digits": "digits",
    }
    # ordered by claim, then statistic, then setting
    assert table.claim.tolist() == ["C4"] * 3 + ["C4b"] * 3 + ["C5", "C7"] + ["C8"] * 3
    assert table.setting.tolist()[:3] == SETTINGS
    # C4b's text names the sizes; its key does not, so it matches across settings
    assert (
        table[table.claim == "C4b"].key
        == "gain of dropout at the smallest training size - at the largest (widths averaged)"
    ).all()


def test_consistency_labels_for_known_verdict_patterns(table):
    got = table.drop_duplicates("claim").set_index("claim")
    assert table[table.claim == "C4"].verdict.tolist() == ["supported", "contradicted", "supported"]
    # C7's differences lie within +-0.5 points: negligible where tested (quick alone)
    assert got.consistency.to_dict() == {
        "C4": DEPENDENT,
        "C4b": EVERY,
        "C5": WHERE_TESTED,
        "C7": "negligible where tested",
        "C8": DEPENDENT,
    }
    assert got.claim_consistency.to_dict() == got.consistency.to_dict()  # one tested statistic per claim here
    assert got.untested_in.fillna("").to_dict() == {
        "C4": "",
        "C4b": "",
        "C5": "quick, quick-digits",
        "C7": "quick-mnist1d, quick-digits",
        "C8": "",
    }


def test_consistency_rule():
    s, c, i, w, n = "supported", "contradicted", "inconclusive", "withheld", "negligible"
    assert consistency({"a": s, "b": s, "c": s}) == EVERY
    assert (
        consistency({"a": s, "b": s, "c": s}, heterogeneous=True) == EVERY
    )  # one verdict everywhere, sizes that differ
    assert consistency({"a": s, "b": i, "c": s}, heterogeneous=True) == DEPENDENT  # estimates that differ beyond chance
    assert (
        consistency({"a": s, "b": i, "c": s}) == "holds in 2 of 3, not shown elsewhere"
    )  # verdicts that differ: not enough
    assert consistency({"a": w, "b": s}) == WHERE_TESTED  # withheld: no verdict
    assert (
        consistency({"a": c, "b": i, "c": w}) == "contradicted in 1 of 2"
        and consistency({"a": c, "b": c}) == "contradicted in 2 of 2"
    )
    assert consistency({"a": s, "b": None, "c": s}) == WHERE_TESTED  # a skipped study is no evidence against
    assert consistency({"a": i, "b": i, "c": None}) == NOT_SHOWN  # undecided everywhere: not shown, never "false"
    assert (
        consistency({"a": n, "b": n}) == NEGLIGIBLE
        and consistency({"a": n, "b": i}) == "negligible in 1 of 2, not shown elsewhere"
    )
    assert consistency({"a": None, "b": w}) == NO_VERDICT


def test_verdicts_that_differ_through_power_alone_are_not_setting_dependent():
    """The same effect of dropout in two settings, measured precisely in one and noisily in the
    other: supported there, inconclusive here, and the estimates agree: not setting-dependent."""
    precise = data_size_runs(0.05, 0.01, jitter=0.002)
    noisy = data_size_runs(0.05, 0.01, jitter=0.3)
    table = generality_table({"a": {"data_size": {"runs": precise}}, "b": {"data_size": {"runs": noisy}}})
    c4 = table[table.claim == "C4"].set_index("setting")
    assert c4.verdict.to_dict() == {"a": "supported", "b": "inconclusive"}
    assert c4.consistency.iloc[0] == "holds in 1 of 2, not shown elsewhere"
    pooled = pooled_table(table).set_index("claim").loc["C4"]
    assert pooled.q_pvalue > 0.05  # Cochran's Q sees no difference between the settings


def test_pooled_rows_equal_statsmodels_on_constructed_estimates():
    from statsmodels.stats.meta_analysis import combine_effects

    from harness.stats.intervals import random_effects

    est, se = np.array([0.79, 0.77, -2.45, 0.3]), np.array([0.26, 0.18, 0.5, 0.4])
    p = random_effects(est, se)
    ref = combine_effects(est, se**2, method_re="iterated")
    frame = ref.summary_frame()
    assert p.estimate == pytest.approx(frame.loc["random effect wls", "eff"]) and p.tau2 == pytest.approx(ref.tau2)
    # heterogeneous estimates: the Hartung-Knapp scale is above 1, so the standard error is statsmodels' own
    assert p.se == pytest.approx(frame.loc["random effect wls", "sd_eff"])
    assert (
        p.q == pytest.approx(ref.q)
        and p.i2 == pytest.approx(ref.i2)
        and p.q_pvalue == pytest.approx(ref.test_homogeneity().pvalue)
    )
    # by hand: the Hartung-Knapp interval, t with k - 1 degrees of freedom on the scaled variance
    w = 1 / (se**2 + p.tau2)
    mu = (w * est).sum() / w.sum()
    hk = np.sqrt((w * (est - mu) ** 2).sum() / ((len(est) - 1) * w.sum()))
    from scipy import stats as st

    assert p.estimate == pytest.approx(mu) and p.se == pytest.approx(max(hk, 1 / np.sqrt(w.sum())))
    assert p.high - p.estimate == pytest.approx(st.t.ppf(0.975, 3) * p.se)
    # the prediction interval for a new setting (Higgins et al. 2009): t with k - 2 degrees of freedom
    assert p.pred_high - p.estimate == pytest.approx(st.t.ppf(0.975, 2) * np.sqrt(p.tau2 + 1 / w.sum()))
    same = random_effects(
        [0.5, 0.5, 0.5], [0.1, 0.2, 0.3]
    )  # equal estimates: tau2 = 0, I2 = 0, an interval of positive width
    assert same.tau2 == 0 and same.i2 == 0 and same.low < 0.5 < same.high


def test_a_claim_holds_in_a_setting_only_when_all_its_tested_statistics_do():
    # C9's two tested statistics: the NLL difference is supported in both settings, the diversity
    # difference only in the first: the claim is setting-dependent, its NLL row holds in every setting
    from test_analysis import JITTER, robustness_table

    def shift(diversity: float) -> pd.DataFrame:  # the dropout ensemble's Brier diversity raised by `diversity`
        base = {("dropout", "mc_shared", 2): 1.0, ("dropout", "ensemble", 2): 0.7}
        t = robustness_table(lambda method, name, r, m: base.get(method, 0.0) + m / 100 + r / 100)
        noise = t.replicate.map(lambda r: 0.01 * JITTER[r]) * (t.group == "dropout") * t["mode"].eq("mc_shared")
        bump = (t.metric == "brier_diversity") & (t["mode"] == "ensemble") & (t.group == "dropout")
        return t.assign(value=t.value + noise + diversity * bump)

    table = generality_table(
        {"a": {"ensemble_vs_dropout": {"shift": shift(0.6)}}, "b": {"ensemble_vs_dropout": {"shift": shift(0.0)}}}
    )
    tested = table[table.test == "directional"]
    assert tested.verdict.tolist() == ["supported", "supported", "supported", "contradicted"]
    assert tested.consistency.tolist() == [EVERY, EVERY, DEPENDENT, DEPENDENT]
    assert set(tested.claim_consistency) == {DEPENDENT}
    assert set(table.loc[table.test == "descriptive", "consistency"]) == {DESCRIPTIVE}


def test_the_command_writes_the_table_the_figure_and_the_page(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HARNESS_OUT", str(tmp_path))
    reports = tmp_path / "reports"
    for setting, studies in three_settings().items():
        for study, tables in studies.items():
            write(
                {"runs": pd.DataFrame({"run_id": ["x"]})} | tables,
                reports / setting / "tables" / study,
                {"dataset": "mnist1d", "skipped": None, "notes": ["training sizes capped"]}
                if setting == "quick-mnist1d"
                else None,
            )
    write(
        {"runs": pd.DataFrame({"run_id": pd.Series(dtype=str)})},
        reports / "quick-digits" / "tables" / "placement",
        {"dataset": "digits", "skipped": "convolutions need images", "notes": []},
    )
    assert generality.main(["--profile", "quick", "--datasets", "mnist5k,mnist1d,digits"]) == 0
    assert "C4b  holds in every setting" in capsys.readouterr().out
    csv = pd.read_csv(reports / "generality" / "claims.csv")
    assert list(csv.columns) == GENERALITY_COLUMNS and len(csv) == 11 and set(csv.setting) == set(SETTINGS)
    assert (tmp_path / "figures" / "generality" / "verdicts.png").stat().st_size > 0 and (
        tmp_path / "figures" / "generality" / "verdicts.pdf"
    ).is_file()
    page = (reports / "generality" / "index.html").read_text()
    assert page.count("data:image/png;base64,") == 2  # the verdict matrix and the forest plots
    pooled = pd.read_csv(reports / "generality" / "pooled.csv")
    assert set(pooled.claim) == {"C4", "C4b", "C8"}  # tested in two settings or more
    assert (tmp_path / "figures" / "generality" / "forest.png").stat().st_size > 0
    assert "Holm&#x27;s adjustment across the 11 tested rows of all settings" in page
    assert "quick 5, quick-mnist1d 5, quick-digits 5" in page
    for s in SETTINGS:
        assert f"<a href='../{s}/index.html'>" in page
    assert "placement skipped: convolutions need images" in page
    assert (
        "Hold in every setting: C4b. Not in every setting: C4 (setting-dependent), C5 (holds where tested), C7 "
        "(negligible where tested), C8 (setting-dependent)." in page
    )
    assert "quick-mnist5k (mnist5k)" in page  # the default setting named by its dataset
    assert "<td class='c-quick-mnist1d-verdict contradicted'>contradicted</td>" in page


def test_a_setting_without_tables_is_named_with_the_command_that_makes_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_OUT", str(tmp_path))
    write({"runs": data_size_runs(0.05, 0.01, jitter=0.002)}, tmp_path / "reports" / "quick" / "tables" / "data_size")
    with pytest.raises(
        SystemExit,
        match=r"setting quick-digits \(reports/quick-digits/tables\): run `make all PROFILE=quick DATASET=digits`",
    ) as e:
        generality.main(["--profile", "quick", "--datasets", "mnist5k,digits"])
    assert "quick-mnist1d" not in str(e.value)
    with pytest.raises(SystemExit, match="names a setting twice"):
        generality.main(["--profile", "quick", "--datasets", "mnist5k,mnist5k"])
    with pytest.raises(SystemExit, match="at least two settings"):
        generality.main(["--profile", "quick", "--datasets", "mnist5k"])


def _imports(path: Path) -> set[str]:
    """The analysis modules `path` imports, at any depth of the file (functions too)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            out |= {node.module} if node.module else {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("analysis"):
            out |= {node.module.split(".")[1]} if "." in node.module else {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("analysis.")}
    return out


def test_the_analysis_package_imports_without_a_circle():
    modules = {p.stem: p for p in (ROOT / "analysis").glob("*.py") if p.stem != "__init__"}
    graph = {m: _imports(p) & set(modules) for m, p in modules.items()}
    assert (
        "presentation" in graph["claims"] and "claims" not in graph["presentation"] and "report" not in graph["claims"]
    )
    done, path = set(), []

    def visit(m):
        assert m not in path, f"import circle: {' -> '.join(path[path.index(m) :] + [m])}"
        if m in done:
            return
        path.append(m)
        for n in sorted(graph[m]):
            visit(n)
        path.pop()
        done.add(m)

    for m in sorted(graph):
        visit(m)


@pytest.mark.parametrize(
    "module, absent",
    [
        ("analysis.claims", ["analysis.report", "analysis.generality"]),
        ("analysis.presentation", ["analysis.claims", "analysis.report", "analysis.generality"]),
        ("analysis.report", ["analysis.generality"]),
        ("analysis.generality", ["analysis.report"]),
    ],
)
def test_a_module_imports_alone_and_nothing_above_it(module, absent):
    code = f"import sys, {module}; print([m for m in {absent!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_a_missing_cell_says_why(table):
    from analysis.generality import missing_reasons

    studies = {s: set(t) for s, t in three_settings().items()}
    why = missing_reasons(table, SETTINGS, {"quick-digits": {"placement": "convolutions need images"}}, studies)
    c5 = "test error at (0.2, 0.5) - at each seed's best cell on validation (non-inferior within 0.5 points)"
    c7 = "test error, dropout at conv blocks and FC - at FC only (weight scaled)"
    assert why["C5", c5, "quick"] == "no rate_grid tables there"
    assert why["C7", c7, "quick-digits"] == "placement skipped: convolutions need images"
    assert why["C7", c7, "quick-mnist1d"] == "no placement tables there"
    band = table.iloc[:1].assign(
        claim="C10",
        key="ECE over moderate shift, one net: weight scaling - T subnetworks",
        study="shift",
        setting="quick",
        test="directional",
    )
    assert (
        missing_reasons(band, ["quick", "b"], {}, {"quick": {"shift"}, "b": {"shift"}})["C10", band.key.iloc[0], "b"]
        == "no moderate shifted set there"
    )
