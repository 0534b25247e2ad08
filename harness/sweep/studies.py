"""The studies: one list, in report order, each with the figures drawn from its tables.

Every reader takes the list from here: the Makefile (`python -m harness.sweep.studies make`, read when make
starts), the plan (`harness.sweep.plan`), the report and the looks (`analysis.presentation`). A study NAME is
`experiments/NAME.py` (its runs), its figures are `analysis/fig_FIGURE.py`, and its claims are entries of
`analysis.claim_specs.SPECS`; adding one touches those files and one line here.

This module imports nothing of the harness, so that make can read it with the system's Python before the
project's environment exists.
"""

from __future__ import annotations

import sys

STUDIES: dict[str, tuple[str, ...]] = {  # study: the figures drawn from its tables
    "mc_vs_ws": ("mc_convergence", "subnetwork_errors"),
    "keep_sweep": ("keep_sweep",),
    "data_size": ("data_size",),
    "features": ("features", "sparsity"),
    "coadaptation": ("coadaptation", "correlations"),
    "rate_grid": ("rate_grid",),
    "placement": ("placement",),
    "exact": ("exact",),
    "ensemble_vs_dropout": ("diversity",),
    "shift": ("shift", "entropy"),
}


def names() -> list[str]:
    """Every study, in report order."""
    return list(STUDIES)


def figures() -> dict[str, str]:
    """{figure: the study whose tables it reads}, in report order."""
    return {fig: study for study, figs in STUDIES.items() for fig in figs}


def make_words() -> str:
    """The Makefile's view, one line of words: `s/STUDY` for each study, then `f/FIGURE=STUDY` for each
    figure with the study whose tables it reads."""
    return " ".join([f"s/{study}" for study in STUDIES] + [f"f/{fig}={study}" for fig, study in figures().items()])


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["make"]:
        print(make_words())
    elif args == ["names"]:
        print(" ".join(names()))
    else:
        print("usage: python -m harness.sweep.studies make|names", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
