"""The group-sequential design of `harness.stats.sequential` checked by simulation.

`simulate` runs the whole procedure (looks, continuation, Holm) on families of directional rows with
known effects and counts the families with a false verdict: null rows, a mix of null and real
effects, and normal, skewed (lognormal) and heavy-tailed (Student t, 3 degrees of freedom)
replicate values; `tests/test_sequential.py` holds its family-wise error to 0.05 within its Monte
Carlo error. `compare_designs` sets the design's power beside the designs it was chosen over: the
fixed design at n_1 and at n_K (`fixed_design`) and anytime-valid e-values with e-Holm (`e_value_t`,
`e_holm`). `benchmark` prints both (`python -m harness bench sequential`), its skewed scenarios at
lognormal sigma 0.15, 0.25 and 0.5: skewness 0.46, 0.78 and 1.75.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from harness.stats.intervals import ALPHA, holm
from harness.stats.sequential import Design, look_pvalues, replay
from harness.stats.verdicts import Hypothesis

DISTRIBUTIONS = ("normal", "skewed", "heavy")
SKEW_SIGMA = 0.15  # lognormal(0, 0.15): skewness 0.46 (see the module docstring for heavier skew)


def draw(rng: np.random.Generator, distribution: str, size, skew_sigma: float = SKEW_SIGMA) -> np.ndarray:
    """Replicate noise of mean 0 and sd 1: normal, skewed (lognormal(0, skew_sigma) centred, skewness
    0.46 at skew_sigma 0.15) or heavy-tailed (Student t with 3 degrees of freedom, scaled)."""
    if distribution == "normal":
        return rng.standard_normal(size)
    if distribution == "skewed":
        s = skew_sigma
        v = rng.lognormal(0.0, s, size)
        return (v - math.exp(s * s / 2)) / math.sqrt((math.exp(s * s) - 1) * math.exp(s * s))
    if distribution == "heavy":
        return rng.standard_t(3, size) / math.sqrt(3.0)
    raise ValueError(f"distribution={distribution!r}; allowed: {', '.join(DISTRIBUTIONS)}")


@dataclass(frozen=True)
class SimulationResult:
    """fwer: share of families with at least one false verdict (with `fwer_se`, its Monte Carlo
    standard error); power: share of real-effect rows decided the right way; mean_n: replicates
    per row, averaged; reps: families simulated; fixed_fwer: the family-wise error of the fixed
    design at n_K (one t-test per row, Holm) on the same draws."""

    fwer: float
    fwer_se: float
    power: float
    mean_n: float
    reps: int
    fixed_fwer: float


def simulate(
    effects: list[float],
    studies: list[int],
    design: Design,
    distribution: str = "normal",
    reps: int = 1000,
    seed: int = 0,
    sesoi: float | None = 0.5,
    adaptive: bool = True,
    skew_sigma: float = SKEW_SIGMA,
) -> SimulationResult:
    """The whole procedure on `reps` families of directional rows: row i has true mean effects[i]
    (in sd of the replicates) and belongs to study studies[i]; a study gets the next look's seeds
    while one of its rows asks for more (`adaptive`; otherwise every study runs to n_max). A false
    verdict: supported or contradicted on a row with effect 0, the wrong sign on a real effect, or
    negligible on a row whose |effect| is at least the sesoi. `skew_sigma`: the skewed values'
    lognormal sigma (`draw`)."""
    rng = np.random.default_rng(seed)
    rows = [Hypothesis("directional", sesoi=sesoi) for _ in effects]
    eff = np.asarray(effects, dtype=float)
    study_ids = sorted(set(studies))
    false_families, fixed_false, right, real, total_n = 0, 0, 0, 0, 0
    for _ in range(reps):
        data = eff[:, None] + draw(rng, distribution, (len(effects), design.n_max), skew_sigma)
        reach = {s: design.looks[0] for s in study_ids}
        if adaptive:
            for nxt in design.looks[1:]:
                outs = replay([data[i, : reach[s]] for i, s in enumerate(studies)], rows, design)
                for s in study_ids:
                    if reach[s] < nxt and any(o.asks_more for o, st in zip(outs, studies, strict=False) if st == s):
                        reach[s] = nxt
        else:
            reach = dict.fromkeys(study_ids, design.n_max)
        outs = replay([data[i, : reach[s]] for i, s in enumerate(studies)], rows, design)
        wrong = False
        for o, e in zip(outs, eff, strict=False):
            total_n += o.n
            if e == 0:
                wrong |= o.verdict in ("supported", "contradicted")
            else:
                real += 1
                right += o.verdict == ("supported" if e > 0 else "contradicted")
                wrong |= o.verdict == ("contradicted" if e > 0 else "supported")
            if sesoi is not None and abs(e) >= sesoi:
                wrong |= o.verdict == "negligible"
        false_families += wrong
        fixed = fixed_design(list(data), rows, design.n_max, design.alpha)
        fixed_false += any(
            v in ("supported", "contradicted") and (e == 0 or (v == "supported") != (e > 0))
            for v, e in zip(fixed, eff, strict=False)
        )
    fwer = false_families / reps
    return SimulationResult(
        fwer,
        math.sqrt(max(fwer * (1 - fwer), 1e-12) / reps),
        right / real if real else math.nan,
        total_n / (reps * len(effects)),
        reps,
        fixed_false / reps,
    )


# ---------------------------------------------------------------------------------------------------
# The alternatives the design was chosen over


def fixed_design(values: list[np.ndarray], rows: list[Hypothesis], n: int, alpha: float = ALPHA) -> list[str]:
    """Verdicts of the fixed design at n replicates: one t-test per row, Holm across the family."""
    ps, sides = [], []
    for x, row in zip(values, rows, strict=False):
        pv = look_pvalues(np.asarray(x, dtype=float), n, row)
        side = min(pv, key=pv.get) if pv else ""
        sides.append(side)
        ps.append(pv.get(side, math.nan))
    adjusted = holm(ps)
    return [s if a <= alpha else "inconclusive" for s, a in zip(sides, adjusted, strict=False)]


def e_value_t(x: np.ndarray, g: float = 1.0) -> float:
    """An e-value for 'the mean is 0' from n replicates of unknown variance: the Bayes factor of
    the one-sample t-test with a normal prior N(0, g) on the standardized effect and the right-Haar
    prior on the scale (Goenen et al. 2005), an e-process under the null for the scale-invariant
    filtration (Perez-Ortiz et al. 2024), so it may be read at every look."""
    n = len(x)
    m, sd = float(x.mean()), float(x.std(ddof=1))
    if n < 2 or not sd > 0:
        return 1.0
    t2 = (m / (sd / math.sqrt(n))) ** 2
    nu = n - 1
    return float((1 + n * g) ** -0.5 * ((1 + t2 / nu) / (1 + t2 / (nu * (1 + n * g)))) ** ((nu + 1) / 2))


def e_holm(e: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """e-Holm (Vovk and Wang 2021): reject H_i when every intersection containing it has an
    average e-value of at least 1 / alpha; the smallest such average takes H_i with the others'
    smallest e-values."""
    e = np.asarray(e, dtype=float)
    out = np.zeros(len(e), dtype=bool)
    for i in range(len(e)):
        others = np.sort(np.delete(e, i))
        sums = e[i] + np.concatenate([[0.0], np.cumsum(others)])
        out[i] = np.min(sums / np.arange(1, len(e) + 1)) >= 1 / alpha
    return out


def compare_designs(
    effects: list[float], design: Design, reps: int = 400, seed: int = 0, distribution: str = "normal"
) -> dict:
    """Power (share of real-effect rows decided the right way) and family-wise error of: the fixed
    design at n_1 and at n_K, this group-sequential design with Holm (every study to n_K), and
    e-values with e-Holm read at every look; one family of directional rows (no sesoi)."""
    rng = np.random.default_rng(seed)
    rows = [Hypothesis("directional") for _ in effects]
    eff = np.asarray(effects, dtype=float)
    names = (
        f"fixed n = {design.looks[0]}",
        f"fixed n = {design.n_max}",
        "group-sequential + Holm",
        "e-values + e-Holm",
    )
    right = dict.fromkeys(names, 0)
    wrong = dict.fromkeys(names, 0)
    real = int(np.sum(eff != 0)) * reps
    for _ in range(reps):
        data = eff[:, None] + draw(rng, distribution, (len(effects), design.n_max))
        verdicts = {
            names[0]: fixed_design(list(data), rows, design.looks[0], design.alpha),
            names[1]: fixed_design(list(data), rows, design.n_max, design.alpha),
            names[2]: [o.verdict for o in replay(list(data), rows, design)],
        }
        rejected = np.zeros(len(effects), dtype=bool)
        for n in design.looks:
            rejected |= e_holm(np.array([e_value_t(d[:n]) for d in data]), design.alpha)
        verdicts[names[3]] = [
            "supported" if r and d[: design.n_max].mean() > 0 else "contradicted" if r else "inconclusive"
            for r, d in zip(rejected, data, strict=False)
        ]
        for name, vs in verdicts.items():
            bad = False
            for v, e in zip(vs, eff, strict=False):
                if e == 0:
                    bad |= v in ("supported", "contradicted")
                else:
                    right[name] += v == ("supported" if e > 0 else "contradicted")
            wrong[name] += bad
    return {name: {"power": right[name] / real if real else math.nan, "fwer": wrong[name] / reps} for name in names}


MIX = [0, 0, 0, 0, 0, 0, 0.8, 1.0, 0.6, -0.8, 1.2, 0.5]  # six null rows and six real effects, in sd
STUDIES = [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]  # twelve rows in four studies


def benchmark(reps: int = 1000, design: Design | None = None) -> str:
    """`python -m harness bench sequential`: the whole procedure by simulation (family-wise error
    with its Monte Carlo error, power, replicates per row) on null rows and a mix, for normal,
    heavy-tailed and skewed values, beside the fixed design at n_K; then the power of the
    designs it was chosen over. `design`: None is `Design()`."""
    design = Design() if design is None else design
    lines = [
        f"Design: looks {design.looks}, alpha {design.alpha:g}, O'Brien-Fleming-type spending, Holm; {len(MIX)} "
        f"rows in {len(set(STUDIES))} studies, {reps} families each",
        "",
        f"{'rows':<6} {'values':<22} {'FWER':>7} {'+-MC':>6} {'fixed n=' + str(design.n_max):>11} {'power':>7} "
        f"{'mean n':>7}",
    ]
    scenarios = [("normal", None), ("heavy", None), ("skewed", 0.15), ("skewed", 0.25), ("skewed", 0.5)]
    for name, effects in (("null", [0.0] * len(MIX)), ("mix", MIX)):
        for dist, sigma in scenarios:
            r = simulate(effects, STUDIES, design, dist, reps=reps, seed=1, skew_sigma=sigma or SKEW_SIGMA)
            label = dist if sigma is None else f"skewed ({_skewness(sigma):.2f})"
            power = "" if math.isnan(r.power) else f"{r.power:.3f}"
            lines.append(
                f"{name:<6} {label:<22} {r.fwer:>7.3f} {r.fwer_se:>6.3f} {r.fixed_fwer:>11.3f} {power:>7} "
                f"{r.mean_n:>7.1f}"
            )
    lines += [
        "",
        "Power on the mix (normal values, every study to n_K), the share of real effects decided the right way:",
    ]
    for name, r in compare_designs(MIX, design, reps=max(100, reps // 2), seed=2).items():
        lines.append(f"  {name:<26} power {r['power']:.3f}   FWER {r['fwer']:.3f}")
    return "\n".join(lines)


def _skewness(sigma: float) -> float:
    w = math.exp(sigma * sigma)
    return (w + 2) * math.sqrt(w - 1)
