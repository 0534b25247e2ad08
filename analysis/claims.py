"""Verdicts on the claims of the dropout story, computed from the collected tables.

Every claim is a pure function from the tables to one value per independent replicate (a seed:
runs that share a seed are matched pairs, and design cells such as architectures, sizes, widths or
keep probabilities are averaged within the seed first), tested by `harness.stats.verdicts` with the
right kind of test, Holm's adjustment across the family and a power analysis. n is always the
number of seeds. Nothing is typed by hand: flip the data and the verdict flips.

`claim_specs` gives each statistic's values and hypothesis, and a `key` that names it without what
its setting decides (sizes, widths, the chosen cell), so the same statistic can be matched across
settings; `decide_specs` decides any list of specs as one Holm family (one setting's, in
`claims_table`, or every setting's, in `analysis.generality`).

Margins are stated in advance (in the statistic's unit, fractions of error): EQUIVALENCE_MARGIN
for C2, NONINFERIORITY_MARGIN for C5. C5's "best cell" is chosen per seed on that seed's validation
error and compared on its test error.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.stats.sequential import Design, decide_in_looks
from harness.stats.verdicts import MIN_N, Hypothesis
from harness.sweep.profiles import LOOKS
from harness.sweep.setting import setting_name

from .labels import label_keep, label_method, label_placement
from .presentation import claim_lines, load_setting, show_claims, study_adaptation
from .tables import TableError

EQUIVALENCE_MARGIN = 0.005  # C2: weight scaling within 0.5 points of error of the ensemble
NONINFERIORITY_MARGIN = 0.005  # C5: the recommended rates at most 0.5 points worse than the best
# Smallest effects of interest of the directional claims, by unit, stated in advance: "no effect"
# is said only when a claim's interval lies within +- this; otherwise too few seeds.
SESOI = {"error": 0.005, "r": 0.02, "nats": 0.02, "brier": 0.002, "ece": 0.01}
# Severity bands of shifted sets, fixed in advance (before the verdicts they give were seen), by
# where the weight-scaled dropout nets' error on the set lies between their clean test error and
# chance (1 - 1/K for K classes): share = (error - clean) / (chance - clean); mild below MILD_SHARE,
# severe from SEVERE_SHARE (near chance calibration rewards whatever hedges), moderate between. The
# same rule on every dataset: a set that is hard for a net already at 30% clean error (MNIST-1D) is
# judged against what that net still had to lose. C10 is tested on mild and moderate shift and
# described on severe shift. (Until December 2026 the bands were fixed for MNIST-like clean error:
# mild below 2 x the clean error, severe above 50% error; on MNIST-1D every set was then severe.)
MILD_SHARE = 0.15
SEVERE_SHARE = 0.5
DEFAULT_CLASSES = 10  # K when the tables do not say which dataset they come from
BANDS = ("mild", "moderate", "severe")
TESTED_BANDS = ("mild", "moderate")
RECOMMENDED = (0.2, 0.5)  # (input, hidden) drop rates of C5

CLAIMS = {
    "C1": "the trained net behaves like an ensemble: averaging subnetworks beats the average subnetwork",
    "C2": "weight scaling approximates averaging the ensemble",
    "C3": "dropout prevents co-adaptation: hidden units correlate less",
    "C4": "dropout reduces overfitting (lower test error)",
    "C4b": "... most where data are scarce",
    "C5": "good rates: drop about 0.2 of the inputs and 0.5 of the hidden units",
    "C6": "with dropout, widen layers by 1/keep",
    "C7": "dropout after convolutions can hurt; it belongs after fully connected layers",
    "C8": "bigger networks benefit more from dropout",
    "C9": "the dropout subnetworks are a weaker ensemble than the same number of independently trained networks",
    "C10": "under shift, averaging subnetworks is better calibrated than weight scaling, and a true ensemble is "
    "better still",
}
COLUMNS = [
    "claim",
    "statement",
    "study",
    "statistic",
    "unit",
    "test",
    "margin",
    "estimate",
    "ci_low",
    "ci_high",
    "method",
    "n",
    "look",
    "design",
    "p_value",
    "repeated_p",
    "p_adjusted",
    "conditional_power",
    "asks_more",
    "effect_sd",
    "mde",
    "seeds_needed",
    "stopped_by_patience",
    "verdict",
    "reason",
]
CONVERGED_SHARE = 0.5  # a study whose runs mostly hit the budget is flagged in the report's run summary
# a tested claim is withheld unless, in every arm it reads, at least this share of the runs stopped by
# patience: an arm cut short by the budget is not at its best, and "dropout hurts" may be the budget speaking
ARM_PATIENCE = 0.9
ARM_COLUMNS = [
    "model",
    "widths",
    "depth",
    "width",
    "p_drop_input",
    "p_drop_hidden",
    "p_drop_sites",
    "train_size",
    "lr",
    "dataset",
]


def _by_seed(per_run: pd.Series, runs_seed: pd.Series) -> pd.Series:
    """Average per-run values within each seed: one value per replicate."""
    return per_run.groupby(runs_seed.reindex(per_run.index)).mean().dropna()


def _top_k(ev: pd.DataFrame, mode: str, metric: str) -> pd.Series:
    """Per run: `metric` of `mode` at its largest k, averaged over repeats (streams)."""
    e = ev[(ev["mode"] == mode) & (ev.metric == metric)]
    e = e[e.k == e.k.max()]
    return e.groupby("run_id")["value"].mean()


def _seeds(df: pd.DataFrame) -> pd.Series:
    return df.drop_duplicates("run_id").set_index("run_id")["seed"]


def c1_values(evaluations: pd.DataFrame, subnetworks: pd.DataFrame) -> pd.Series:
    """Per seed: mean single-subnetwork error - error of their MC average (architectures averaged)."""
    members = subnetworks.groupby("run_id")["error"].mean()
    return _by_seed((members - _top_k(evaluations, "mc_shared", "error")).dropna(), _seeds(evaluations))


def mc_values(evaluations: pd.DataFrame, metric: str, mode: str = "mc_shared") -> pd.Series:
    """Per seed: `metric` of `mode` at its largest k (architectures averaged)."""
    return _by_seed(_top_k(evaluations, mode, metric), _seeds(evaluations))


def c2_values(evaluations: pd.DataFrame, against: str = "mc_shared") -> pd.Series:
    """Per seed: weight-scaled error - error of `against` at its largest k (architectures averaged)."""
    diff = _top_k(evaluations, "weight_scaled", "error") - _top_k(evaluations, against, "error")
    return _by_seed(diff.dropna(), _seeds(evaluations))


def c3_values(coadaptation: pd.DataFrame, runs: pd.DataFrame) -> dict[str, pd.Series]:
    """Per hidden layer, per seed: mean |r| without dropout - at the highest hidden rate. A layer
    with fewer than two live units has NaN mean |r|, so that seed drops out of the layer's n."""
    r = coadaptation[coadaptation.metric == "mean_abs_r"]
    top = runs.p_drop_hidden.max()
    info = runs.set_index("run_id")[["seed", "p_drop_hidden"]]
    out = {}
    for layer, g in r.groupby("layer", sort=True):
        d = info.join(g.set_index("run_id")["value"], how="inner")
        off = d[d.p_drop_hidden == 0].groupby("seed")["value"].mean()
        on = d[d.p_drop_hidden == top].groupby("seed")["value"].mean()
        out[layer] = (off - on).dropna()
    return out


def _gains(runs: pd.DataFrame) -> pd.DataFrame:
    """Test error without dropout minus with dropout, per (train_size, width, seed)."""
    key = ["train_size", "width", "seed"]
    on = runs[runs.p_drop_hidden > 0].set_index(key)["test_error"]
    off = runs[runs.p_drop_hidden == 0].set_index(key)["test_error"]
    return (off - on).rename("gain").dropna().reset_index()


def c4_values(runs: pd.DataFrame) -> dict[str, pd.Series]:
    """C4: per seed, the gain of dropout averaged over sizes and widths; C4b: per seed, gain at the
    smallest size - gain at the largest (averaged over widths); C8: per seed, gain at the widest
    width - at the narrowest (averaged over sizes)."""
    g = _gains(runs)
    small, large = g.train_size.min(), g.train_size.max()
    narrow, wide = g.width.min(), g.width.max()
    by_size = g.groupby(["seed", "train_size"])["gain"].mean().unstack()
    by_width = g.groupby(["seed", "width"])["gain"].mean().unstack()
    return {
        "C4": g.groupby("seed")["gain"].mean(),
        "C4b": (by_size[small] - by_size[large]).dropna(),
        "C8": (by_width[wide] - by_width[narrow]).dropna(),
    }


def c5_best_cells(runs: pd.DataFrame) -> pd.Series:
    """Per seed: the (input, hidden) rates with the lowest validation error on that seed's own
    validation split (ties: the smaller rates). Every seed trains every cell anyway, so the choice
    is made within the replicate, and its noise is inside the interval rather than fixed once for
    all seeds; chosen on validation, never on the test errors it is then compared with."""
    ordered = runs.sort_values(["seed", "p_drop_input", "p_drop_hidden"], kind="stable")
    best = ordered.loc[ordered.groupby("seed")["val_error"].idxmin()]
    return pd.Series(
        [(float(a), float(b)) for a, b in zip(best.p_drop_input, best.p_drop_hidden, strict=False)],
        index=best.seed.to_numpy(),
        dtype=object,
    ).rename_axis("seed")


def c5_values(runs: pd.DataFrame) -> pd.Series:
    """Per seed: test error at the recommended rates - at that seed's best cell on validation."""
    best = c5_best_cells(runs)
    cell = runs.groupby(["seed", "p_drop_input", "p_drop_hidden"])["test_error"].mean()
    out = {s: cell.get((s, *RECOMMENDED), float("nan")) - cell.get((s, *b), float("nan")) for s, b in best.items()}
    return pd.Series(out, dtype=float).rename_axis("seed").dropna()


def cells_text(best: pd.Series) -> str:
    """The cells chosen, most often first: "(0.2, 0.5) in 3 seeds, (0.0, 0.5) in 2"."""
    counts = best.value_counts()
    return ", ".join(
        f"{c} in {k} seed{'s' * (k != 1)}" if i == 0 else f"{c} in {k}" for i, (c, k) in enumerate(counts.items())
    )


def _keeps(runs: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The keep sweep's runs with their `keep`, and C6's base width n0: the smallest width trained
    at keep 1."""
    r = label_keep(runs)
    return r, int(r.loc[r.keep == 1.0, "width"].min())


def c6_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs C6's difference of differences reads: n0 and n0 / keep at every keep below 1, and
    the same widths without dropout."""
    r, n0 = _keeps(runs)
    keeps = sorted(set(r.keep) - {1.0})
    wide = {round(n0 / k) for k in keeps}
    return runs[
        ((r.keep < 1) & ((r.width == n0) | (r.width == (n0 / r.keep).round())))
        | ((r.keep == 1) & r.width.isin(wide | {n0}))
    ]


def c6_values(runs: pd.DataFrame, control: bool = True) -> pd.Series:
    """Per seed, averaged over keeps below 1, a difference of differences: the gain in test error of
    widening the base width n0 to n0 / keep with dropout at that keep, minus the gain of the same
    widening without dropout. n0 is the smallest width trained at keep 1; a seed lacking a cell at
    any keep takes no part. With `control=False`, the rule as the story states it: the gain with dropout
    alone (described beside the test)."""
    r, n0 = _keeps(runs)
    off = r[r.keep == 1.0]

    def gain(g: pd.DataFrame, wide: int) -> pd.Series:  # test error at n0 - at the wider width, per seed
        at = g.groupby(["width", "seed"])["test_error"].mean()
        return at.get(n0, pd.Series(dtype=float)) - at.get(wide, pd.Series(dtype=float))

    diffs = []
    for keep, g in r[r.keep < 1].groupby("keep"):
        wide = round(n0 / keep)
        diffs.append((gain(g, wide) - gain(off, wide) if control else gain(g, wide)).rename(keep))
    return pd.concat(diffs, axis=1).dropna().mean(axis=1) if diffs else pd.Series(dtype=float)


def c7_values(evaluations: pd.DataFrame) -> pd.Series:
    """Per seed: weight-scaled test error with dropout everywhere - after the FC layer only."""
    ws = label_placement(evaluations[(evaluations["mode"] == "weight_scaled") & (evaluations.metric == "error")])
    every = ws[ws.placement == "everywhere"].groupby("seed")["value"].mean()
    fc = ws[ws.placement == "fc_only"].groupby("seed")["value"].mean()
    return (every - fc).dropna()


def method_rows(shift: pd.DataFrame, method: str, metric: str) -> pd.DataFrame:
    """Rows of the robustness table `shift` for one method (see `analysis.labels.METHODS`) and metric."""
    return label_method(shift[shift.metric == metric]).query("method == @method")


def per_replicate(df: pd.DataFrame, by: list[str] = ()) -> pd.Series:
    """`value` averaged within each run or ensemble (over its sets, streams, ...), then over the
    runs of each replicate: one value per replicate and `by` group."""
    keys = list(by) + ["replicate"]
    return df.groupby(keys + ["run_id"])["value"].mean().groupby(keys).mean()


def replicate_values(shift: pd.DataFrame, method: str, metric: str, sets: pd.Series | None = None) -> pd.Series:
    """Per replicate: `metric` of `method` averaged over the chosen sets within each run or
    ensemble, then over the replicate's runs."""
    return per_replicate(
        method_rows(shift if sets is None else shift[sets.reindex(shift.index, fill_value=False)], method, metric)
    )


def shifted(shift: pd.DataFrame) -> pd.Series:
    """The rotated (angle > 0) and corrupted sets."""
    return shift["shift"].isin(["rotation", "corruption"]) & (shift.intensity > 0)


def severity_bands(shift: pd.DataFrame, n_classes: int = DEFAULT_CLASSES) -> pd.Series:
    """Band of each shifted set by the mean error of the weight-scaled dropout nets on it (all runs
    pooled), placed between their error on the test split and chance 1 - 1/n_classes, with
    thresholds fixed in advance (MILD_SHARE, SEVERE_SHARE; see above). Indexed by set name. The
    band orders sets by how hard they are for every method alike; the methods are compared within
    a band, on calibration, not on the error that defines it."""
    ws = method_rows(shift, "weight scaling", "error")
    err = ws.groupby(["set", "run_id"])["value"].mean().groupby("set").mean()
    clean = err.get("test")
    chance = 1 - 1 / n_classes
    sets = shift.loc[shifted(shift), "set"].unique()
    out = {}
    for name in sets:
        e = err.get(name)
        if e is None or clean is None:
            continue
        share = (e - clean) / (chance - clean) if chance > clean else 1.0
        out[name] = "severe" if share >= SEVERE_SHARE else ("mild" if share < MILD_SHARE else "moderate")
    return pd.Series(out, dtype=object).rename_axis("set")


def n_classes_of(runs: pd.DataFrame | None) -> int:
    """K of the dataset a study's runs table names (`harness.data.datasets.describe`, from metadata for a
    named dataset); DEFAULT_CLASSES when the table names none or the file is gone."""
    from harness.data.datasets import describe
    from harness.errors import HarnessError

    if runs is None or "dataset" not in runs or runs.empty:
        return DEFAULT_CLASSES
    name = str(runs["dataset"].iloc[0])
    try:
        return describe(name, files=name.endswith(".npz")).n_classes
    except HarnessError:
        return DEFAULT_CLASSES


def c9_values(shift: pd.DataFrame) -> dict[str, pd.Series]:
    """Per replicate, on the test split: NLL of M subnetworks (mc_shared, k = M) - of M independent
    dropout nets; Brier diversity of the independent nets - of the subnetworks; and, described, the
    same NLL difference against the deep ensemble without dropout and at equal test-time compute,
    and each ensemble's gain (its NLL - its members' mean NLL), which tells member strength and
    diversity apart."""
    test = shift["set"] == "test"

    def v(method, metric):
        return replicate_values(shift, method, metric, test)

    return {
        "nll": (v("subnetworks (k = M)", "nll") - v("dropout ensemble", "nll")).dropna(),
        "diversity": (v("dropout ensemble", "brier_diversity") - v("subnetworks (k = M)", "brier_diversity")).dropna(),
        "nll_deep": (v("subnetworks (k = M)", "nll") - v("deep ensemble", "nll")).dropna(),
        "nll_compute": (v("subnetworks (equal compute)", "nll") - v("dropout ensemble", "nll")).dropna(),
        "error": (v("subnetworks (k = M)", "error") - v("dropout ensemble", "error")).dropna(),
        "gain_subnetworks": (v("subnetworks (k = M)", "nll") - v("subnetworks (k = M)", "member_nll")).dropna(),
        "gain_ensemble": (v("dropout ensemble", "nll") - v("dropout ensemble", "member_nll")).dropna(),
    }


# {one net, M independent nets} x {weight scaled, averaged over subnetworks}: T subnetworks in all either way
C10_METHODS = {
    ("one net", "weight scaled"): "weight scaling",
    ("one net", "subnetworks"): "subnetworks (k = T)",
    ("M nets", "weight scaled"): "dropout ensemble",
    ("M nets", "subnetworks"): "dropout ensemble of subnetwork averages",
}


def c10_values(shift: pd.DataFrame, n_classes: int = DEFAULT_CLASSES) -> dict[str, pd.Series]:
    """Per replicate and severity band (`severity_bands`), ECE averaged over the band's sets, in the
    2 x 2 design C10_METHODS: `mode_B` = weight scaled - subnetworks for one net (the inference
    mode at fixed independence) and `mode_M_B` for M nets; `independence_B` = one net's T
    subnetworks - M nets each averaged over T / M (independence at a fixed mode and number of
    subnetworks); described: `deep_B` = one net's subnetworks - the deep ensemble without dropout,
    `ts_B` = temperature-scaled weight scaling - subnetworks, and `over_B_<cell>` each cell's
    signed calibration (mean confidence - accuracy), for B in mild, moderate, severe."""
    bands = severity_bands(shift, n_classes)
    out = {}
    for band in BANDS:
        names = bands.index[bands == band]
        sets = shift["set"].isin(names)
        if not sets.any():
            continue

        def v(method, metric="ece", sets=sets):
            return replicate_values(shift, method, metric, sets)

        one, many = v(C10_METHODS[("one net", "subnetworks")]), v(C10_METHODS[("M nets", "subnetworks")])
        out |= {
            f"mode_{band}": (v(C10_METHODS[("one net", "weight scaled")]) - one).dropna(),
            f"mode_M_{band}": (v(C10_METHODS[("M nets", "weight scaled")]) - many).dropna(),
            f"independence_{band}": (one - many).dropna(),
            f"deep_{band}": (one - v("deep ensemble")).dropna(),
            f"ts_{band}": (v("temperature scaling") - one).dropna(),
        }
        for (nets, mode), method in C10_METHODS.items():
            out[f"over_{band}_{nets}, {mode}"] = v(method, "overconfidence").dropna()
    return out


def ood_values(ood: pd.DataFrame, method: str, score: str) -> dict[str, pd.Series]:
    """Per unseen set, per replicate: AUROC of `score` under `method`."""
    d = label_method(ood[(ood.metric == "auroc") & (ood.score == score)]).query("method == @method")
    return {s: g.droplevel("set") for s, g in per_replicate(d, ["set"]).groupby(level="set")}


def claim_specs(
    tables: dict[str, dict[str, pd.DataFrame]],
    equivalence_margin: float = EQUIVALENCE_MARGIN,
    noninferiority_margin: float = NONINFERIORITY_MARGIN,
) -> list[tuple[dict, pd.Series, Hypothesis]]:
    """(row metadata, values per seed, hypothesis) for every claim whose study is in `tables`
    (`tables[study][name]`); a missing study is skipped, so a partial suite still gets verdicts."""

    def has(study, *names):
        return study in tables and all(n in tables[study] and not tables[study][n].empty for n in names)

    def meta(claim, study, statistic, unit="error", runs=None, key=None):
        """`runs`: the runs the statistic reads (default: all of the study's), for its convergence
        share; `key`: the statistic named without what its setting decides (sizes, widths, the
        chosen cell), when its text names any of that."""
        used = runs if runs is not None else tables.get(study, {}).get("runs")
        return {
            "claim": claim,
            "statement": CLAIMS[claim],
            "study": study,
            "statistic": statistic,
            "unit": unit,
            "stopped_by_patience": patience_share(used),
            "weakest_arm": weakest_arm(used),
            "key": key or statistic,
            "profile": profile_of(tables.get(study, {})),
        }

    def directional(unit: str = "error") -> Hypothesis:
        return Hypothesis("directional", sesoi=SESOI[unit])

    equivalent = Hypothesis("equivalence", equivalence_margin)
    described = Hypothesis("descriptive")
    eq = f"equivalent within +-{100 * equivalence_margin:g} points"
    specs = []
    if has("mc_vs_ws", "evaluations", "subnetworks"):
        ev = tables["mc_vs_ws"]["evaluations"]
        specs += [
            (
                meta("C1", "mc_vs_ws", "mean single-subnetwork error - error of their MC average (sanity check)"),
                c1_values(ev, tables["mc_vs_ws"]["subnetworks"]),
                directional(),
            ),
            (
                meta("C1", "mc_vs_ws", "pairwise disagreement of the subnetworks", "fraction"),
                mc_values(ev, "disagreement"),
                described,
            ),
            (meta("C2", "mc_vs_ws", f"weight-scaled error - MC-average error ({eq})"), c2_values(ev), equivalent),
            (
                meta("C2", "mc_vs_ws", "weight-scaled error - MC-average error (positive: the ensemble is better)"),
                c2_values(ev),
                described,
            ),
            (
                meta("C2", "mc_vs_ws", "inference gap: L2 distance of MC-average and weight-scaled softmax", "L2"),
                mc_values(ev, "inference_gap"),
                described,
            ),
        ]
    if has("exact", "evaluations"):
        specs.append(
            (
                meta("C2", "exact", f"weight-scaled error - exact-ensemble error ({eq})"),
                c2_values(tables["exact"]["evaluations"], "exact"),
                equivalent,
            )
        )
    if has("coadaptation", "coadaptation", "runs"):
        runs = tables["coadaptation"]["runs"]
        top = runs.p_drop_hidden.max()
        used = runs[runs.p_drop_hidden.isin([0.0, top])]
        for layer, v in c3_values(tables["coadaptation"]["coadaptation"], runs).items():
            specs.append(
                (
                    meta(
                        "C3",
                        "coadaptation",
                        f"{layer}: mean |r|, no dropout - p_drop {top:g}",
                        "r",
                        used,
                        key=f"{layer}: mean |r|, no dropout - the highest hidden drop rate",
                    ),
                    v,
                    directional("r"),
                )
            )
    if has("data_size", "runs"):
        runs = tables["data_size"]["runs"]
        v = c4_values(runs)
        sizes, widths = sorted(runs.train_size.unique()), sorted(runs.width.unique())
        specs += [
            (
                meta("C4", "data_size", "test error without - with dropout (sizes and widths averaged)"),
                v["C4"],
                directional(),
            ),
            (
                meta(
                    "C4b",
                    "data_size",
                    f"gain of dropout at {sizes[0]} examples - at {sizes[-1]} (widths averaged)",
                    key="gain of dropout at the smallest training size - at the largest (widths averaged)",
                ),
                v["C4b"],
                directional(),
            ),
        ]
    if has("rate_grid", "runs"):
        grid = tables["rate_grid"]["runs"]
        best = c5_best_cells(grid)
        used = grid[
            [
                (pi, ph) in (RECOMMENDED, best.get(s))
                for s, pi, ph in zip(grid.seed, grid.p_drop_input, grid.p_drop_hidden, strict=False)
            ]
        ]
        within = f"(non-inferior within {100 * noninferiority_margin:g} points)"
        specs.append(
            (
                meta(
                    "C5",
                    "rate_grid",
                    f"test error at {RECOMMENDED} - at each seed's best cell on its own validation split "
                    f"({cells_text(best)}) {within}",
                    runs=used,
                    key=f"test error at {RECOMMENDED} - at each seed's best cell on validation {within}",
                ),
                c5_values(grid),
                Hypothesis("noninferiority", noninferiority_margin),
            )
        )
    if has("keep_sweep", "runs"):
        ks = tables["keep_sweep"]["runs"]
        specs += [
            (
                meta(
                    "C6",
                    "keep_sweep",
                    "gain of widening n0 to n0 / keep with dropout - the same widening without dropout (keeps < 1 "
                    "averaged)",
                    runs=c6_runs(ks),
                ),
                c6_values(ks),
                directional(),
            ),
            (
                meta(
                    "C6",
                    "keep_sweep",
                    "test error at n0 - at n0 / keep, same keep, no control (keeps < 1 averaged)",
                    runs=c6_runs(ks),
                ),
                c6_values(ks, control=False),
                described,
            ),
        ]
    if has("placement", "evaluations"):
        pr = tables["placement"].get("runs")
        used = label_placement(pr).query("placement != 'none'") if pr is not None and "p_drop_sites" in pr else None
        specs.append(
            (
                meta(
                    "C7",
                    "placement",
                    "test error, dropout at conv blocks and FC - at FC only (weight scaled)",
                    runs=used,
                ),
                c7_values(tables["placement"]["evaluations"]),
                directional(),
            )
        )
    if has("ensemble_vs_dropout", "shift"):
        v9 = c9_values(tables["ensemble_vs_dropout"]["shift"])
        nets = dropout_nets(
            tables["ensemble_vs_dropout"].get("runs")
        )  # what the tested rows read: the dropout nets only
        specs += [
            (
                meta(
                    "C9",
                    "ensemble_vs_dropout",
                    "test NLL, M subnetworks - M independently trained dropout nets",
                    "nats",
                    nets,
                ),
                v9["nll"],
                directional("nats"),
            ),
            (
                meta(
                    "C9",
                    "ensemble_vs_dropout",
                    "Brier diversity (ambiguity), M independent dropout nets - M subnetworks",
                    "brier",
                    nets,
                ),
                v9["diversity"],
                directional("brier"),
            ),
            (
                meta("C9", "ensemble_vs_dropout", "test error, M subnetworks - M independent dropout nets"),
                v9["error"],
                described,
            ),
            (
                meta(
                    "C9",
                    "ensemble_vs_dropout",
                    "test NLL, M subnetworks - deep ensemble of M nets without dropout",
                    "nats",
                ),
                v9["nll_deep"],
                described,
            ),
            (
                meta(
                    "C9",
                    "ensemble_vs_dropout",
                    "test NLL, subnetworks at equal test-time compute - M independent dropout nets",
                    "nats",
                ),
                v9["nll_compute"],
                described,
            ),
            (
                meta("C9", "ensemble_vs_dropout", "ensemble gain: test NLL of M subnetworks - their mean NLL", "nats"),
                v9["gain_subnetworks"],
                described,
            ),
            (
                meta(
                    "C9",
                    "ensemble_vs_dropout",
                    "ensemble gain: test NLL of M independent dropout nets - their mean NLL",
                    "nats",
                ),
                v9["gain_ensemble"],
                described,
            ),
        ]
    if has("shift", "shift"):
        v10 = c10_values(tables["shift"]["shift"], n_classes_of(tables["shift"].get("runs")))
        nets = dropout_nets(tables["shift"].get("runs"))  # the tested rows compare dropout nets only
        for band in BANDS:
            if f"mode_{band}" not in v10:
                continue
            test = directional("ece") if band in TESTED_BANDS else described
            where = f"ECE over {band} shift"
            specs += [
                (
                    meta("C10", "shift", f"{where}, one net: weight scaling - T subnetworks", "ece", nets),
                    v10[f"mode_{band}"],
                    test,
                ),
                (
                    meta(
                        "C10",
                        "shift",
                        f"{where}, T subnetworks of one net - M dropout nets averaged over T / M each",
                        "ece",
                        nets,
                    ),
                    v10[f"independence_{band}"],
                    test,
                ),
                (
                    meta(
                        "C10",
                        "shift",
                        f"{where}, M dropout nets: weight scaled - averaged over T / M subnetworks each",
                        "ece",
                    ),
                    v10[f"mode_M_{band}"],
                    described,
                ),
                (
                    meta("C10", "shift", f"{where}, T subnetworks - deep ensemble without dropout", "ece"),
                    v10[f"deep_{band}"],
                    described,
                ),
                (
                    meta("C10", "shift", f"{where}, temperature-scaled weight scaling - T subnetworks", "ece"),
                    v10[f"ts_{band}"],
                    described,
                ),
            ]
            specs += [
                (
                    meta(
                        "C10",
                        "shift",
                        f"overconfidence (mean confidence - accuracy) over {band} shift, {cell}",
                        "overconfidence",
                    ),
                    v10[f"over_{band}_{cell}"],
                    described,
                )
                for cell in (f"{n}, {m}" for n, m in C10_METHODS)
            ]
        if has("shift", "ood"):
            for unseen, values in ood_values(tables["shift"]["ood"], "subnetworks (k = T)", "disagreement").items():
                specs.append(
                    (
                        meta("C10", "shift", f"AUROC of subnetwork disagreement, test split against {unseen}", "auroc"),
                        values,
                        described,
                    )
                )
    if has("data_size", "runs"):
        specs.append(
            (
                meta(
                    "C8",
                    "data_size",
                    f"gain of dropout at width {widths[-1]} - at width {widths[0]} (sizes averaged)",
                    key="gain of dropout at the widest width - at the narrowest (sizes averaged)",
                ),
                v["C8"],
                directional(),
            )
        )
    return specs


# The most tested rows `claim_specs` gives each study, known before its tables exist: the looks
# driver counts every other study's rows at p = 1 in Holm's family (tests/test_suite.py checks the
# bound on every study's collected tables). coadaptation gives one row per hidden site of its MLPs;
# shift two per tested band (fewer when no shifted set falls in a band).
TESTED_ROWS = {
    "mc_vs_ws": 2,
    "keep_sweep": 1,
    "data_size": 3,
    "features": 0,
    "coadaptation": None,
    "rate_grid": 1,
    "placement": 1,
    "exact": 1,
    "ensemble_vs_dropout": 2,
    "shift": 2 * len(TESTED_BANDS),
}


def tested_rows_at_most(study: str, configs: list, skipped: bool = False) -> int:
    """At most how many tested rows `claim_specs` gives `study` whose runs are `configs` (the
    experiment's, as `harness.sweep.experiment.load_experiment` lists them): 0 for a study its setting
    skips, one per hidden layer for coadaptation."""
    if skipped:
        return 0
    if study not in TESTED_ROWS:
        raise ValueError(f"study {study!r} is not in analysis.claims.TESTED_ROWS: add its most tested rows there")
    if study == "coadaptation":
        if any(c.model.kind != "mlp" for c in configs):
            raise ValueError(
                "coadaptation's tested rows are counted per hidden layer of an MLP; count a CNN's sites in "
                "tested_rows_at_most"
            )
        return max((len(c.model.widths) for c in configs), default=0)
    return TESTED_ROWS[study]


def profile_of(study_tables: dict[str, pd.DataFrame]) -> str | None:
    """The profile a study's tables were collected for (its runs table says), else None."""
    runs = study_tables.get("runs")
    if runs is None or "profile" not in runs or runs.empty:
        return None
    return str(runs.profile.iloc[0])


def design_of(specs: list[tuple[dict, pd.Series, Hypothesis]]) -> tuple[Design, str]:
    """The sequential design the specs' values were collected under, and its description: the
    profile's looks (`harness.sweep.profiles.LOOKS`) whenever the tables say their profile (a row that
    lost a replicate, to a diverged run say, is tested at the looks it still fills, never at a look
    that did not happen); otherwise (tables of an experiment of your own) one look per replicate
    count found among the tested rows, said so in the description."""
    profiles = {m.get("profile") for m, _, _ in specs} - {None}
    planned = LOOKS.get(profiles.pop()) if len(profiles) == 1 else None
    if planned:
        design, how = Design(planned), "planned"
    else:
        ns = sorted({int(v.notna().sum()) for _, v, h in specs if h.kind != "descriptive"})
        design, how = (
            Design(tuple(n for n in ns if n >= MIN_N) or (MIN_N,)),
            "from the replicate counts found (no planned looks)",
        )
    looks = ", ".join(map(str, design.looks))
    text = (
        f"looks at {looks} replicates ({how}); O'Brien-Fleming-type alpha spending (Lan-DeMets), Holm on repeated "
        "p-values"
        if len(design.looks) > 1
        else f"one look at {looks} replicates ({how}); t-test, Holm"
    )
    return design, text


def patience_share(runs: pd.DataFrame | None) -> float:
    """The share of `runs` whose training stopped by patience (NaN without a runs table that says
    why runs stopped)."""
    if runs is None or "stopped_by" not in runs or runs.empty:
        return float("nan")
    return float((runs.stopped_by == "patience").mean())


def dropout_nets(runs: pd.DataFrame | None) -> pd.DataFrame | None:
    """The runs with dropout (any input or hidden rate above 0) of an ensemble study's runs table."""
    if runs is None or runs.empty or "p_drop_hidden" not in runs:
        return runs
    hidden = runs.p_drop_hidden.map(lambda v: max(v) if hasattr(v, "__len__") else v).astype(float)
    return runs[(hidden > 0) | (runs.get("p_drop_input", 0.0) > 0)]


def weakest_arm(runs: pd.DataFrame | None) -> tuple[float, str]:
    """The arm (runs that differ only in their seed) with the smallest share of runs stopped by
    patience: (share, the arm in words); (NaN, "") without a runs table that says why runs stopped."""
    if runs is None or "stopped_by" not in runs or runs.empty:
        return float("nan"), ""
    cols = [c for c in ARM_COLUMNS if c in runs]
    keyed = runs.assign(**{c: runs[c].map(str) for c in cols})
    shares = (
        keyed.groupby(cols, sort=True, dropna=False).stopped_by.agg(lambda s: float((s == "patience").mean()))
        if cols
        else pd.Series([float((runs.stopped_by == "patience").mean())], index=["all runs"])
    )
    arm = shares.idxmin()
    parts = arm if isinstance(arm, tuple) else (arm,)
    shown = {c: v for c, v in zip(cols, parts, strict=False) if v not in ("nan", "None", "")}
    return float(shares.min()), ", ".join(f"{c} {v}" for c, v in shown.items() if c != "dataset") or "all runs"


def budget_withheld(meta: dict, h: Hypothesis) -> str:
    """Why a tested row is withheld for its training budget ("" when every arm it reads stopped by
    patience often enough, or the tables do not say how runs stopped)."""
    share, arm = meta.get("weakest_arm", (float("nan"), ""))
    if h.kind == "descriptive" or not share < ARM_PATIENCE:
        return ""
    return (
        f"withheld: only {share:.0%} of the runs of one arm it reads ({arm}) stopped by patience, fewer than "
        f"{ARM_PATIENCE:.0%}; the rest hit the training budget or diverged, so the arms may not be at their best: "
        "raise the "
        "setting's budget (train.epochs, or train.steps) until they stop by patience (or lower a rate that diverges)"
    )


def claims_table(tables: dict[str, dict[str, pd.DataFrame]], **margins) -> pd.DataFrame:
    """The claims table: one row per tested or described statistic, with the columns of COLUMNS."""
    return decide_specs(claim_specs(tables, **margins))[COLUMNS]


def decide_specs(specs: list[tuple[dict, pd.Series, Hypothesis]], best_case: bool = False) -> pd.DataFrame:
    """Verdicts on `specs` (as `claim_specs` returns them, from one setting or several) decided as
    ONE family: Holm's adjustment covers every tested row of every spec. One row per spec with its
    metadata (every key, COLUMNS' and any other, such as a setting), the verdict procedure's
    output and the test and margin, in the order of CLAIMS (stable: the specs' own order within a
    claim). A tested row is withheld when an arm it reads stopped by patience in fewer than ARM_PATIENCE
    of its runs (`budget_withheld`). `best_case`: conditional power at the whole alpha
    (`harness.stats.sequential.replay`; the looks driver's rule)."""
    if not specs:
        return pd.DataFrame(columns=COLUMNS)
    design, described = design_of(specs)
    withheld = [budget_withheld(m, h) for m, _, h in specs]
    # values in replicate order, NaN for a replicate a row lacks, so that a look's replicates are the
    # first n positions for every row; a row withheld for its budget enters no test (a descriptive row
    # is estimated, not tested)
    planned = "(planned)" in described  # the profile's looks: replicate r sits at position r
    values = [replicate_positions(v, design) if planned else v.sort_index().to_numpy(dtype=float) for _, v, _ in specs]
    rows = decide_in_looks(
        values,
        [Hypothesis("descriptive") if why else h for (_, _, h), why in zip(specs, withheld, strict=False)],
        design,
        best_case,
    )
    out = []
    for (m, _, h), r, why in zip(specs, rows, withheld, strict=False):
        row = (
            m
            | r
            | {
                "test": h.kind,
                "margin": h.margin if h.kind in ("equivalence", "noninferiority") else float("nan"),
                "design": described,
            }
        )
        if why:
            row |= {"verdict": "withheld", "reason": why, "look": 0}
        out.append(row)
    order = {c: i for i, c in enumerate(CLAIMS)}
    df = pd.DataFrame(out)
    return df.sort_values("claim", key=lambda s: s.map(order), kind="stable").reset_index(drop=True)


def replicate_positions(values: pd.Series, design: Design) -> np.ndarray:
    """A row's values (indexed by replicate) at their positions in the design: replicate r at
    position r (`harness.sweep.experiment.in_looks` puts replicate r in the first look whose n exceeds
    it), NaN where the row lacks one, up to the smallest look that holds its largest replicate. A
    replicate lost from every row of a study still leaves its gap. (Without planned looks, as for
    an experiment of your own, values keep their order.)"""
    index = values.index
    if len(index) == 0 or not all(isinstance(r, (int, np.integer)) and r >= 0 for r in index):
        return values.sort_index().to_numpy(dtype=float)
    top = int(max(index)) + 1
    n = next((k for k in design.looks if k >= top), top)
    return values.reindex(range(n)).to_numpy(dtype=float)


def holm_family_size(claims: pd.DataFrame) -> int:
    """The rows of a decided claims table that entered Holm's adjustment: tested, with a repeated
    p-value (`harness.stats.sequential.decide_in_looks`'s family)."""
    return int(((claims.test != "descriptive") & claims.repeated_p.notna()).sum())


def main(argv: list[str] | None = None) -> int:
    """``python -m analysis.claims --profile P [--dataset D] [--study S]``: the claims table from
    the collected tables of a setting, printed; Holm's family is every tested row of the studies
    whose tables exist."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m analysis.claims", description=main.__doc__.splitlines()[0])
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--dataset", help="the setting's dataset (default: each study's own)")
    ap.add_argument("--study", help="print only the rows of this study")
    args = ap.parse_args(argv)
    setting = setting_name(args.profile, args.dataset)
    tables = load_setting(setting)
    skipped = {s: why for s in tables if (why := study_adaptation(setting, s).skipped)}
    if args.study in skipped:
        print(f"claims ({setting}): {args.study} was skipped on this dataset: {skipped[args.study]}")
        return 0
    tables = {s: t for s, t in tables.items() if s not in skipped}
    if args.study and args.study not in tables:
        make = f"make {args.study} PROFILE={args.profile}" + (
            f" DATASET={args.dataset}" if setting != args.profile else ""
        )
        raise TableError(f"no tables of {args.study} ({setting}); run `{make}` first")
    claims = claims_table(tables)
    family = holm_family_size(claims)  # the rows that entered the adjustment, not every tested one
    shown = show_claims(claims[claims.study == args.study] if args.study else claims)
    print(f"claims ({setting}; Holm across the {family} tested rows of {len(tables)} studies with tables):")
    print("\n".join(claim_lines(shown)))
    return 0


if __name__ == "__main__":
    import sys

    from .tables import exit_2

    sys.exit(exit_2(main))
