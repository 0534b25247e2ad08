"""The claim statistics as one table: `SPECS`, one entry per statistic.

An entry names its claim and study, the study's tables it needs, its text, the function that gives
its values (one per replicate, `analysis.claim_values`), its unit, the kind of test, its key and the
runs it reads. `analysis.claims.claim_specs` turns the entries whose study and tables are present
into (row metadata, values, hypothesis) rows, in the order of SPECS; the report, the generality page
and the looks driver all decide those rows, and the looks driver counts the tested entries of a study
(`analysis.claims.TESTED_ROWS`) before its tables exist. A study of `harness.sweep.studies.STUDIES`
without an entry (features) gives figures and tables only.

The `key` names a statistic without what its setting decides (sizes, widths, the cell chosen on
validation), so that the same statistic can be matched across settings (`analysis.generality`);
it defaults to the statistic's text. An entry that makes one row per part of the tables (a hidden
layer, an unseen set) says so in `each`: its values are then a mapping from the part's name, which
fills "{part}" in its text and key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pandas as pd

from .claim_values import (
    BANDS,
    C10_METHODS,
    RECOMMENDED,
    c1_values,
    c2_values,
    c3_values,
    c4_values,
    c5_best_cells,
    c5_values,
    c6_runs,
    c6_values,
    c7_values,
    c9_values,
    c10_values,
    cells_text,
    dropout_nets,
    mc_values,
    n_classes_of,
    ood_values,
)
from .labels import label_placement

TESTED_BANDS = ("mild", "moderate")  # C10 is tested on these severity bands and described on the rest
TESTS = ("directional", "equivalence", "noninferiority", "descriptive")  # `harness.stats.verdicts.Hypothesis` kinds
PART = "{part}"  # in the text and key of an entry with `each`: the part's name


class Study:
    """One study's collected tables by name, with the values several entries read (C4, C9, C10)
    computed once per `analysis.claims.claim_specs` call (`once`)."""

    def __init__(self, tables: Mapping[str, pd.DataFrame]):
        self.tables = tables
        self._once: dict[Callable, object] = {}

    def __getitem__(self, name: str) -> pd.DataFrame:
        return self.tables[name]

    def get(self, name: str) -> pd.DataFrame | None:
        return self.tables.get(name)

    def has(self, *names: str) -> bool:
        """Every table of `names` present and not empty."""
        return all(n in self.tables and not self.tables[n].empty for n in names)

    def once(self, derive: Callable[[Study], object]) -> object:
        """`derive(self)`, computed at the first call only (`derive` a module-level function)."""
        if derive not in self._once:
            self._once[derive] = derive(self)
        return self._once[derive]


@dataclass(frozen=True)
class Margins:
    """The margins stated in advance, in fractions of error (`analysis.claims.EQUIVALENCE_MARGIN`, ...)."""

    equivalence: float
    noninferiority: float


Text = str | Callable[[Study, Margins], str]  # fixed, or naming what the tables decide or a margin


@dataclass(frozen=True)
class Spec:
    """One claim statistic. `values(study)` gives one value per replicate (a Series indexed by
    replicate), None where the tables hold no such statistic (a severity band without a shifted
    set), or, for an entry with `each`, a mapping {part: Series}. `runs(study)`: the runs the
    statistic reads, for its convergence share (None: all of the study's runs)."""

    claim: str
    study: str
    needs: tuple[str, ...]  # the study's tables it reads, each present and not empty
    statistic: Text
    values: Callable[[Study], pd.Series | Mapping[str, pd.Series] | None]
    unit: str = "error"
    test: str = "directional"  # one of TESTS
    key: Text | None = None  # default: the statistic's text
    runs: Callable[[Study], pd.DataFrame | None] | None = None
    each: str = ""  # what the entry makes one row per ("hidden layer"), when it makes several

    def __post_init__(self):
        if self.test not in TESTS:
            raise ValueError(f"{self.claim}: test {self.test!r} is not one of {TESTS}")

    def rows(self, study: Study, margins: Margins) -> list[tuple[str, str, pd.Series]]:
        """(statistic, key, values) of each row the entry makes from `study`'s tables."""
        values = self.values(study)
        if values is None:
            return []
        statistic = self.statistic(study, margins) if callable(self.statistic) else self.statistic
        key = self.key(study, margins) if callable(self.key) else (self.key or statistic)
        if not self.each:
            return [(statistic, key, values)]
        return [(statistic.replace(PART, str(part)), key.replace(PART, str(part)), v) for part, v in values.items()]


def _c4(study: Study) -> dict[str, pd.Series]:
    return c4_values(study["runs"])


def _c9(study: Study) -> dict[str, pd.Series]:
    return c9_values(study["shift"])


def _c10(study: Study) -> dict[str, pd.Series]:
    return c10_values(study["shift"], n_classes_of(study.get("runs")))


def _equivalent(m: Margins) -> str:
    return f"equivalent within +-{100 * m.equivalence:g} points"


def _noninferior(m: Margins) -> str:
    return f"(non-inferior within {100 * m.noninferiority:g} points)"


def _c3_text(study: Study, m: Margins) -> str:
    return f"{PART}: mean |r|, no dropout - p_drop {study['runs'].p_drop_hidden.max():g}"


def _c3_runs(study: Study) -> pd.DataFrame:
    """The runs without dropout and at the highest hidden rate."""
    runs = study["runs"]
    return runs[runs.p_drop_hidden.isin([0.0, runs.p_drop_hidden.max()])]


def _c5_runs(study: Study) -> pd.DataFrame:
    """Each seed's runs at the recommended rates and at its best cell."""
    grid, best = study["runs"], c5_best_cells(study["runs"])
    cells = zip(grid.seed, grid.p_drop_input, grid.p_drop_hidden, strict=False)
    return grid[[(pi, ph) in (RECOMMENDED, best.get(s)) for s, pi, ph in cells]]


def _c7_runs(study: Study) -> pd.DataFrame | None:
    """The runs with dropout somewhere (None without a runs table that names the sites)."""
    runs = study.get("runs")
    return label_placement(runs).query("placement != 'none'") if runs is not None and "p_drop_sites" in runs else None


def _sizes(study: Study) -> list:
    return sorted(study["runs"].train_size.unique())


def _widths(study: Study) -> list:
    return sorted(study["runs"].width.unique())


def _dropout_nets(study: Study) -> pd.DataFrame | None:
    return dropout_nets(study.get("runs"))


def _c10_band(band: str) -> tuple[Spec, ...]:
    """C10's entries on one severity band: ECE in the 2 x 2 design of `analysis.claim_values.C10_METHODS`
    (the tested rows compare dropout nets only), and each cell's signed calibration."""
    where = f"ECE over {band} shift"
    tested = "directional" if band in TESTED_BANDS else "descriptive"

    def ece(statistic: str, name: str, test: str = "descriptive", runs=None) -> Spec:
        return Spec(
            "C10",
            "shift",
            ("shift",),
            f"{where}, {statistic}",
            lambda s: s.once(_c10).get(f"{name}_{band}"),
            "ece",
            test,
            runs=runs,
        )

    over = (
        Spec(
            "C10",
            "shift",
            ("shift",),
            f"overconfidence (mean confidence - accuracy) over {band} shift, {cell}",
            lambda s, cell=cell: s.once(_c10).get(f"over_{band}_{cell}"),
            "overconfidence",
            "descriptive",
        )
        for cell in (f"{n}, {m}" for n, m in C10_METHODS)
    )
    return (
        ece("one net: weight scaling - T subnetworks", "mode", tested, _dropout_nets),
        ece(
            "T subnetworks of one net - M dropout nets averaged over T / M each", "independence", tested, _dropout_nets
        ),
        ece("M dropout nets: weight scaled - averaged over T / M subnetworks each", "mode_M"),
        ece("T subnetworks - deep ensemble without dropout", "deep"),
        ece("temperature-scaled weight scaling - T subnetworks", "ts"),
        *over,
    )


MC = ("evaluations", "subnetworks")  # what mc_vs_ws's rows need
SPECS: tuple[Spec, ...] = (
    Spec(
        "C1",
        "mc_vs_ws",
        MC,
        "mean single-subnetwork error - error of their MC average (sanity check)",
        lambda s: c1_values(s["evaluations"], s["subnetworks"]),
    ),
    Spec(
        "C1",
        "mc_vs_ws",
        MC,
        "pairwise disagreement of the subnetworks",
        lambda s: mc_values(s["evaluations"], "disagreement"),
        "fraction",
        "descriptive",
    ),
    Spec(
        "C2",
        "mc_vs_ws",
        MC,
        lambda s, m: f"weight-scaled error - MC-average error ({_equivalent(m)})",
        lambda s: c2_values(s["evaluations"]),
        test="equivalence",
    ),
    Spec(
        "C2",
        "mc_vs_ws",
        MC,
        "weight-scaled error - MC-average error (positive: the ensemble is better)",
        lambda s: c2_values(s["evaluations"]),
        test="descriptive",
    ),
    Spec(
        "C2",
        "mc_vs_ws",
        MC,
        "inference gap: L2 distance of MC-average and weight-scaled softmax",
        lambda s: mc_values(s["evaluations"], "inference_gap"),
        "L2",
        "descriptive",
    ),
    Spec(
        "C2",
        "exact",
        ("evaluations",),
        lambda s, m: f"weight-scaled error - exact-ensemble error ({_equivalent(m)})",
        lambda s: c2_values(s["evaluations"], "exact"),
        test="equivalence",
    ),
    Spec(
        "C3",
        "coadaptation",
        ("coadaptation", "runs"),
        _c3_text,
        lambda s: c3_values(s["coadaptation"], s["runs"]),
        "r",
        key=f"{PART}: mean |r|, no dropout - the highest hidden drop rate",
        runs=_c3_runs,
        each="hidden layer",
    ),
    Spec(
        "C4",
        "data_size",
        ("runs",),
        "test error without - with dropout (sizes and widths averaged)",
        lambda s: s.once(_c4)["C4"],
    ),
    Spec(
        "C4b",
        "data_size",
        ("runs",),
        lambda s, m: f"gain of dropout at {_sizes(s)[0]} examples - at {_sizes(s)[-1]} (widths averaged)",
        lambda s: s.once(_c4)["C4b"],
        key="gain of dropout at the smallest training size - at the largest (widths averaged)",
    ),
    Spec(
        "C5",
        "rate_grid",
        ("runs",),
        lambda s, m: (
            f"test error at {RECOMMENDED} - at each seed's best cell on its own validation split "
            f"({cells_text(c5_best_cells(s['runs']))}) {_noninferior(m)}"
        ),
        lambda s: c5_values(s["runs"]),
        test="noninferiority",
        key=lambda s, m: f"test error at {RECOMMENDED} - at each seed's best cell on validation {_noninferior(m)}",
        runs=_c5_runs,
    ),
    Spec(
        "C6",
        "keep_sweep",
        ("runs",),
        "gain of widening n0 to n0 / keep with dropout - the same widening without dropout (keeps < 1 averaged)",
        lambda s: c6_values(s["runs"]),
        runs=lambda s: c6_runs(s["runs"]),
    ),
    Spec(
        "C6",
        "keep_sweep",
        ("runs",),
        "test error at n0 - at n0 / keep, same keep, no control (keeps < 1 averaged)",
        lambda s: c6_values(s["runs"], control=False),
        test="descriptive",
        runs=lambda s: c6_runs(s["runs"]),
    ),
    Spec(
        "C7",
        "placement",
        ("evaluations",),
        "test error, dropout at conv blocks and FC - at FC only (weight scaled)",
        lambda s: c7_values(s["evaluations"]),
        runs=_c7_runs,
    ),
    Spec(
        "C9",
        "ensemble_vs_dropout",
        ("shift",),
        "test NLL, M subnetworks - M independently trained dropout nets",
        lambda s: s.once(_c9)["nll"],
        "nats",
        runs=_dropout_nets,  # the tested rows read the dropout nets only
    ),
    Spec(
        "C9",
        "ensemble_vs_dropout",
        ("shift",),
        "Brier diversity (ambiguity), M independent dropout nets - M subnetworks",
        lambda s: s.once(_c9)["diversity"],
        "brier",
        runs=_dropout_nets,
    ),
    Spec(
        "C9",
        "ensemble_vs_dropout",
        ("shift",),
        "test error, M subnetworks - M independent dropout nets",
        lambda s: s.once(_c9)["error"],
        test="descriptive",
    ),
    Spec(
        "C9",
        "ensemble_vs_dropout",
        ("shift",),
        "test NLL, M subnetworks - deep ensemble of M nets without dropout",
        lambda s: s.once(_c9)["nll_deep"],
        "nats",
        "descriptive",
    ),
    Spec(
        "C9",
        "ensemble_vs_dropout",
        ("shift",),
        "test NLL, subnetworks at equal test-time compute - M independent dropout nets",
        lambda s: s.once(_c9)["nll_compute"],
        "nats",
        "descriptive",
    ),
    Spec(
        "C9",
        "ensemble_vs_dropout",
        ("shift",),
        "ensemble gain: test NLL of M subnetworks - their mean NLL",
        lambda s: s.once(_c9)["gain_subnetworks"],
        "nats",
        "descriptive",
    ),
    Spec(
        "C9",
        "ensemble_vs_dropout",
        ("shift",),
        "ensemble gain: test NLL of M independent dropout nets - their mean NLL",
        lambda s: s.once(_c9)["gain_ensemble"],
        "nats",
        "descriptive",
    ),
    *(spec for band in BANDS for spec in _c10_band(band)),
    Spec(
        "C10",
        "shift",
        ("shift", "ood"),
        f"AUROC of subnetwork disagreement, test split against {PART}",
        lambda s: ood_values(s["ood"], "subnetworks (k = T)", "disagreement"),
        "auroc",
        "descriptive",
        each="unseen set",
    ),
    # C8 reads data_size's runs with C4; its row has always come last in the list of rows
    Spec(
        "C8",
        "data_size",
        ("runs",),
        lambda s, m: f"gain of dropout at width {_widths(s)[-1]} - at width {_widths(s)[0]} (sizes averaged)",
        lambda s: s.once(_c4)["C8"],
        key="gain of dropout at the widest width - at the narrowest (sizes averaged)",
    ),
)
