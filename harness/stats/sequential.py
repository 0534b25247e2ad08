"""Seeds in looks: a group-sequential verdict procedure with Holm's adjustment across the family.

A study is run in looks of n_1 < n_2 < ... < n_K replicates (`Design`; each profile's looks are in
`harness.sweep.profiles.LOOKS`). After each look every claim row is decided again from all its
replicates so far, and a study gets the next look's seeds only while one of its rows is undecided
and could still be decided at n_K.

The procedure (`replay`) is a pure function of the rows' values in seed order and the design:

- **Each row's test** is the t-test of `harness.stats.verdicts` (directional: the mean against 0;
  equivalence by TOST against its margin; non-inferiority against its margin), read at each look
  through its nominal two-sided p-value. A directional row with a smallest effect of interest is
  also tested for *negligible*: TOST against +-SESOI. The two nulls (mean 0, |mean| >= SESOI)
  cannot both hold, so one row is one member of the family whichever way it is decided.
- **Alpha spending over the looks**: Lan-DeMets spending with the O'Brien-Fleming-type function
  alpha(t) = 2 - 2 Phi(z_{1 - alpha / 2} / sqrt(t)) at information t_k = n_k / n_K (Lan and DeMets
  1983, Biometrika 70:659), boundaries computed for the canonical joint distribution of the z
  statistics by recursive numerical integration (Armitage, McPherson and Rowe 1969). Early looks
  decide only large effects; the last look's boundary is close to the fixed design's.
- **Holm across the family, with the looks**: as in Maurer and Bretz (2013, Statistics in
  Biopharmaceutical Research 5:311), a row's repeated p-value is the smallest level at whose
  boundaries its statistic has crossed at some look so far, and Holm's step-down runs on the
  repeated p-values at every look. A row rejected at a look stays rejected.
- **Continuation** (`asks_more`): an undecided row asks for the next look while its conditional
  power at n_K (the chance of crossing the last boundary at its current Holm level, if the true
  effect is the observed one) is at least CONDITIONAL_POWER_FLOOR. Stopping is futility stopping:
  it can only remove rejections, so it leaves the error control intact.

`simulate` checks the family-wise error of the whole procedure (looks, continuation, Holm) on null
rows, a mix of null and real effects, and skewed and heavy-tailed replicate values;
`tests/test_sequential.py` holds it to 0.05 within its Monte Carlo error. `compare_designs` prints
the power of this procedure next to the fixed design at n_1 and at n_K and to anytime-valid
e-values with e-Holm (`python -m harness bench sequential`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import optimize, special, stats

from harness.stats.intervals import ALPHA, holm
from harness.stats.verdicts import Hypothesis, assess, inconclusive_reason, no_spread, power_fields, verdict_pvalues

CONDITIONAL_POWER_FLOOR = 0.1  # an undecided row below this conditional power at n_K stops asking
ZMAX = 12.0  # the grid's reach in standard deviations; beyond it nothing is left to integrate
GRID = 601  # points of the recursive integration over the continuation region
LEVELS = np.geomspace(1e-9, 0.5, 240)  # the levels at which boundaries are tabulated (a repeated p above: 1)


@dataclass(frozen=True)
class Design:
    """Looks at `looks` replicates (increasing; the first is the smallest n with a verdict),
    family-wise level `alpha`."""

    looks: tuple[int, ...] = (5, 10, 20)
    alpha: float = ALPHA
    spending: str = "obf"  # "none": every look read at the full level, the naive design (for checks only)

    def __post_init__(self) -> None:
        if self.spending not in ("obf", "none"):
            raise ValueError(f"spending={self.spending!r}; allowed values: obf, none")
        looks = tuple(int(n) for n in self.looks)
        if not looks or looks[0] < 2 or any(b <= a for a, b in zip(looks, looks[1:], strict=False)):
            raise ValueError(f"looks={self.looks}: expected increasing replicate counts, the first at least 2")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha={self.alpha}: expected a level between 0 and 1")
        object.__setattr__(self, "looks", looks)

    @property
    def n_max(self) -> int:
        return self.looks[-1]

    def look_of(self, n: int) -> int:
        """The number of looks that n replicates complete (0: fewer than the first look)."""
        return sum(n >= k for k in self.looks)


def obf_spent(level: float, t: np.ndarray) -> np.ndarray:
    """Two-sided alpha spent by information t under the O'Brien-Fleming-type Lan-DeMets function."""
    return 2 - 2 * stats.norm.cdf(stats.norm.ppf(1 - level / 2) / np.sqrt(t))


@lru_cache(maxsize=4096)
def boundaries(level: float, fractions: tuple[float, ...]) -> np.ndarray:
    """Two-sided z boundaries c_k of a group-sequential test at total level `level` with looks at
    information `fractions` (increasing, the last 1): P(|Z_j| < c_j for j < k, |Z_k| >= c_k) is the
    alpha spent at look k, under the canonical joint distribution (independent increments of the
    score S_k = Z_k sqrt(t_k))."""
    t = np.asarray(fractions, dtype=float)
    spent = np.diff(np.concatenate([[0.0], obf_spent(level, t)]))
    c = [float(stats.norm.isf(spent[0] / 2)) if spent[0] > 0 else math.inf]
    b = min(c[0], ZMAX) * math.sqrt(t[0])
    s = np.linspace(-b, b, GRID)  # the score's continuation region at look 1
    w = _weights(s)
    density = stats.norm.pdf(s, scale=math.sqrt(t[0]))
    for k in range(1, len(t)):
        dt = t[k] - t[k - 1]
        sd = math.sqrt(dt)
        root_t = math.sqrt(t[k])

        def crossing(ck, density=density, s=s, w=w, sd=sd, root_t=root_t):
            bk = ck * root_t
            tail = stats.norm.sf((bk - s) / sd) + stats.norm.cdf((-bk - s) / sd)
            return float(np.sum(w * density * tail))

        if spent[k] <= 1e-300 or crossing(ZMAX) >= spent[k]:
            ck = math.inf  # too little to spend: this look decides nothing at this level
        else:
            ck = optimize.brentq(lambda x, k=k: crossing(x) - spent[k], 1e-6, ZMAX, xtol=1e-10)
        c.append(ck)
        if k + 1 < len(t):
            bk = min(ck, ZMAX) * root_t
            new = np.linspace(-bk, bk, GRID)
            kernel = stats.norm.pdf((new[:, None] - s[None, :]) / sd) / sd
            density, s = kernel @ (w * density), new
            w = _weights(s)
    return np.array(c)


def _weights(s: np.ndarray) -> np.ndarray:
    """Simpson's weights on an odd, even-spaced grid."""
    h = s[1] - s[0]
    w = np.ones(len(s))
    w[1:-1:2], w[2:-1:2] = 4, 2
    return w * h / 3


@lru_cache(maxsize=32)
def nominal_levels(looks: tuple[int, ...], spending: str = "obf") -> np.ndarray:
    """(len(LEVELS), K): the nominal two-sided p-value at which each look's boundary lies, for
    every tabulated total level; a look's nominal level grows with the total level. Without
    spending every look is read at the total level itself."""
    if spending == "none":
        return np.repeat(LEVELS[:, None], len(looks), axis=1)
    fractions = tuple(n / looks[-1] for n in looks)
    return np.array([2 * stats.norm.sf(boundaries(float(a), fractions)) for a in LEVELS])


@lru_cache(maxsize=32)
def _log_table(looks: tuple[int, ...], spending: str) -> np.ndarray:
    return np.log(np.maximum(nominal_levels(looks, spending), 1e-300)).T.copy()


def level_crossed(p: float, look: int, design: Design) -> float:
    """The smallest total level at whose boundary look `look` (1-based) is crossed by the nominal
    p-value p (log-linear between tabulated levels); 1 when it crosses at no tabulated level. A
    row's repeated p-value is the smallest of these over the looks so far."""
    if not p < 1 or math.isnan(p):
        return 1.0
    if len(design.looks) == 1:  # one look spends the whole level there: the nominal p is the level
        return float(p)
    table, log_levels = _log_table(design.looks, design.spending), np.log(LEVELS)
    row = table[look - 1]
    lp = math.log(max(p, 1e-300))
    if lp > row[-1]:
        return 1.0
    return math.exp(float(np.interp(lp, row, log_levels)))


# ---------------------------------------------------------------------------------------------------
# One row's nominal p-values at each look


def look_pvalues(x: np.ndarray, n: int, row: Hypothesis) -> dict[str, float]:
    """Nominal two-sided p-values of each verdict a row can reach with its first n values
    (`harness.stats.verdicts.verdict_pvalues`); none when they have no spread."""
    v = x[:n]
    m = math.fsum(v) / n
    se = math.sqrt(math.fsum((v - m) ** 2) / (n - 1)) / math.sqrt(n)
    return verdict_pvalues(m, se, n - 1, row) if se > 0 else {}


# ---------------------------------------------------------------------------------------------------
# The replay


@dataclass(frozen=True)
class Outcome:
    """A row's verdict (supported, contradicted, negligible, inconclusive, withheld), the look it
    was reached at (0: none), the replicates it used, its repeated p-value, its conditional power
    at the largest n, whether it asks for the next look's seeds, and its adjusted p (at most alpha
    exactly when it was decided)."""

    verdict: str
    look: int
    n: int
    repeated_p: float
    conditional_power: float
    asks_more: bool
    p_adjusted: float = math.nan  # Holm's adjusted repeated p at the look it was decided at, else at the last look


def replay(values: list[np.ndarray], rows: list[Hypothesis], design: Design, best_case: bool = False) -> list[Outcome]:
    """The design replayed on each row's values in replicate order: at every look the rows that
    have its replicates are tested, Holm's step-down runs on the repeated p-values of every row with
    a test, and a verdict once reached is kept. A look's replicates are the first n positions; a
    NaN among them (a replicate that lost its value, to a diverged run say) is dropped there, and
    never lets a later replicate into an earlier look. A look is tested when its values number at
    least the first look's; a row tested at no look is withheld; a row with zero spread gets no
    test (harness.stats.verdicts' rule). `Outcome.n` is the replicates (positions) its verdict used.

    Holm's family at each look counts every row whose study reached it: a row that lost values
    there (too few to test) enters with p = 1, so that a gap never shrinks the family the others
    are judged in (its outcome carries that repeated p of 1 while it stays untested). A row once
    decided enters later looks with p = 0: it stays rejected and passes its level on (Maurer and
    Bretz's sequentially rejective rule), so a row that joins the family at a later look (one
    without spread before) cannot undo a level the decided rows had freed.

    An undecided row's conditional power is computed at Holm's level for the next undecided row,
    alpha / (undecided rows); with `best_case`, at alpha, the level a row faces once every other
    row of the family is decided (the looks driver's rule: more seeds could decide the row in some
    family, so the report, whose level is never higher, asks no more of a study the driver stopped)."""
    xs = [np.asarray(v, dtype=float) for v in values]
    m = len(rows)
    p_rep = np.full(m, np.nan)  # repeated p-value so far
    side = [""] * m
    reached = np.zeros(m, dtype=int)
    levels: list[dict[str, float]] = [{} for _ in range(m)]  # per verdict, the smallest level crossed so far
    last = [0] * m  # the last look a row was tested at
    flat_at = [0] * m  # the last look a row had enough values but no spread
    gap = np.zeros(m, dtype=bool)  # a look its study reached held too few of its values
    p_adj = np.full(m, np.nan)  # Holm's adjusted repeated p at the look a row was decided at, else the last
    for k, n in enumerate(design.looks, start=1):
        for i, (x, row) in enumerate(zip(xs, rows, strict=False)):
            v = at_look(x, n)
            if len(x) < n:
                continue
            if len(v) < design.looks[0]:
                gap[i] = True
                continue
            if _flat(v):
                flat_at[i] = k
                continue
            last[i] = k
            for verdict, p in look_pvalues(v, len(v), row).items():
                levels[i][verdict] = min(levels[i].get(verdict, 1.0), level_crossed(p, k, design))
            if reached[i] == 0 and levels[i]:
                side[i] = min(levels[i], key=levels[i].get)
                p_rep[i] = levels[i][side[i]]
        adjusted = holm(np.where(reached > 0, 0.0, np.where(np.isnan(p_rep) & gap, 1.0, p_rep)))
        open_ = reached == 0
        p_adj[open_] = adjusted[open_]  # a decided row keeps the adjusted p it was decided with
        reached[open_ & (adjusted <= design.alpha)] = k
    out = []
    undecided = int(np.sum((reached == 0) & (~np.isnan(p_rep) | gap)))
    level = design.alpha / (1 if best_case else max(1, undecided))  # the Holm level an undecided row faces next
    for i, (x, row) in enumerate(zip(xs, rows, strict=False)):
        if reached[i]:
            out.append(
                Outcome(
                    side[i],
                    int(reached[i]),
                    design.looks[reached[i] - 1],
                    float(p_rep[i]),
                    math.nan,
                    False,
                    float(p_adj[i]),
                )
            )
            continue
        p_gap = 1.0 if gap[i] else math.nan
        if last[i] == 0 and flat_at[i]:  # values without spread: no test, and more seeds of the same will not give one
            out.append(
                Outcome("inconclusive", 0, design.looks[flat_at[i] - 1], p_gap, math.nan, False, float(p_adj[i]))
            )
            continue
        if last[i] == 0:
            # a row whose replicates lost values (NaN) in a look its study ran asks for the next look,
            # which may hold enough of them
            more = design.looks[0] <= len(x) < design.n_max and bool(np.any(~np.isnan(x)))
            out.append(Outcome("withheld", 0, len(x), p_gap, math.nan, more, float(p_adj[i])))
            continue
        n_used = design.looks[last[i] - 1]
        cp = conditional_power(at_look(x, n_used), row, design, level, n=n_used)
        more = n_used < design.n_max and cp >= CONDITIONAL_POWER_FLOOR
        out.append(Outcome("inconclusive", 0, n_used, float(p_rep[i]), cp, more, float(p_adj[i])))
    return out


def at_look(x: np.ndarray, n: int) -> np.ndarray:
    """The values of the first n replicates (positions) of `x`, NaN dropped."""
    v = np.asarray(x, dtype=float)[:n]
    return v[~np.isnan(v)]


def decide_in_looks(values: list, hypotheses: list[Hypothesis], design: Design, best_case: bool = False) -> list[dict]:
    """The claims table's fields for a family of rows decided by the design (`replay`): per row the
    fields of `harness.stats.verdicts.assess` at the replicates its verdict used (the first `Outcome.n`,
    NaN dropped), the repeated p-value (`repeated_p`) and its Holm adjustment (`p_adjusted`),
    `verdict`, `reason`, `look` (the look it was reached at, or the last look it was tested at; 0:
    none), `conditional_power` (undecided rows), `asks_more`, and the power fields (`mde`,
    `mde_sd`, `seeds_needed`) at Holm's first step. Values are in replicate order, NaN where a
    replicate has none. Descriptive and withheld rows are estimated on all their values and enter
    no test. `best_case`: as `replay`'s."""
    xs = [np.asarray(v, dtype=float) for v in values]
    tested = [i for i, h in enumerate(hypotheses) if h.kind != "descriptive"]
    outcomes = dict(
        zip(tested, replay([xs[i] for i in tested], [hypotheses[i] for i in tested], design, best_case), strict=False)
    )
    p_rep = [outcomes[i].repeated_p if i in outcomes else math.nan for i in range(len(xs))]
    adjusted = [outcomes[i].p_adjusted if i in outcomes else math.nan for i in range(len(xs))]
    family = max(1, int(np.sum(~np.isnan(np.asarray(p_rep, dtype=float)))))
    out = []
    for i, (x, h) in enumerate(zip(xs, hypotheses, strict=False)):
        o = outcomes.get(i)
        n = o.n if o is not None and o.verdict != "withheld" else len(x)
        r = assess(at_look(x, n), h) | {"repeated_p": p_rep[i], "p_adjusted": float(adjusted[i])}
        r |= power_fields(r, h, design.alpha / family)
        r |= {
            "look": design.looks.index(n) + 1 if o is not None and o.verdict != "withheld" and n in design.looks else 0,
            "conditional_power": o.conditional_power if o is not None else math.nan,
            "asks_more": bool(o.asks_more) if o is not None else False,
        }
        r |= {
            "verdict": o.verdict if o is not None else "descriptive",
            "reason": _looks_reason(r, h, o, design, len(x)),
        }
        out.append(r)
    return out


def _looks_reason(r: dict, h: Hypothesis, o: Outcome | None, design: Design, positions: int | None = None) -> str:
    """Why a row has its verdict, when it is not a decision: descriptive, withheld, no spread, open,
    stopped for futility, or undecided at the largest n (with the effect it could have detected);
    and for a decision reached at a look its study did not run (`positions`: the replicates its
    study ran), how: Holm's recycling at that look."""
    if o is None:
        return "an estimate, not a test"
    if o.verdict == "withheld":
        more = "; its study runs the next look, which may hold enough" if o.asks_more else ""
        return f"withheld: {r['n']} replicates with a value, fewer than the first look's {design.looks[0]}{more}"
    if r.get("no_spread"):
        return (
            f"no spread: all {r['n']} replicates are equal (value {r['estimate']:.6g}), so no test is possible; "
            "a zero-variance sample is no evidence"
        )
    if o.verdict != "inconclusive":
        if positions is not None and positions < o.n:
            return (
                f"decided at the family's look {o.look} ({o.n} replicates), which its study did not run: its repeated "
                "p from "
                f"its last look, n = {positions}, met Holm's level once other rows were decided there (Maurer and "
                "Bretz's recycling)"
            )
        return ""
    cp = f"conditional power at n = {design.n_max}: {o.conditional_power:.2f}"
    if o.asks_more:
        return (
            f"undecided at n = {r['n']}; {cp}, at or above the floor {CONDITIONAL_POWER_FLOOR:g}: more seeds could "
            "decide it "
            f"(its study runs the next look while such a row is open)"
        )
    detect = f"it could detect {r['mde']:.3g} ({r['mde_sd']:.2g} sd) at n = {r['n']}; " if r["mde"] == r["mde"] else ""
    if o.n < design.n_max:  # the look's replicates (r['n'] counts those with a value)
        return (
            f"stopped at n = {o.n} for futility ({cp}, below the floor {CONDITIONAL_POWER_FLOOR:g}); "
            f"{detect}{inconclusive_reason(r, h)}"
        )
    return f"undecided at the largest n = {design.n_max}: {detect}{inconclusive_reason(r, h)}"


def _flat(x: np.ndarray) -> bool:
    return len(x) >= 2 and bool(no_spread(x))


def conditional_power(x: np.ndarray, row: Hypothesis, design: Design, level: float, n: int | None = None) -> float:
    """The chance that the row crosses the last look's boundary at total level `level`, given its
    replicates so far (`x`, from the first `n` replicates of the design: len(x) unless some lost
    their values), if the true standardized effect is the observed one (Brownian motion on the
    information scale). For a directional row with a sesoi, the larger of its two tests'."""
    n = len(x) if n is None else n
    if n >= design.n_max:
        return 0.0
    m, sd = float(x.mean()), float(x.std(ddof=1))
    if not sd > 0:
        return 0.0
    c = (
        boundaries(level, tuple(k / design.n_max for k in design.looks))[-1]
        if design.spending == "obf"
        else stats.norm.isf(level / 2)
    )
    t = n / design.n_max

    def cp(distance: float, two_sided: bool) -> float:
        z = distance / sd * math.sqrt(len(x))  # the standardized distance's z statistic now
        drift = distance / sd * math.sqrt(design.n_max) * (1 - t)
        mean, scale = z * math.sqrt(t) + drift, math.sqrt(1 - t)
        up = special.ndtr((mean - c) / scale)
        return float(up + (special.ndtr((-c - mean) / scale) if two_sided else 0.0))

    if row.kind == "directional":
        out = cp(abs(m), True)
        if row.sesoi is not None:
            out = max(out, cp(row.sesoi - abs(m), False))
        return out
    if row.kind == "noninferiority":
        return cp(abs(row.margin - m), False)
    return cp(abs(row.margin - abs(m)), False)


# ---------------------------------------------------------------------------------------------------
# Simulation of the whole procedure


DISTRIBUTIONS = ("normal", "skewed", "heavy")
SKEW_SIGMA = 0.15  # lognormal(0, 0.15): skewness 0.46 (see the module docstring for heavier skew)


def draw(rng: np.random.Generator, distribution: str, size) -> np.ndarray:
    """Replicate noise of mean 0 and sd 1: normal, skewed (lognormal(0, SKEW_SIGMA) centred, skewness
    0.46 at SKEW_SIGMA 0.15) or heavy-tailed (Student t with 3 degrees of freedom, scaled)."""
    if distribution == "normal":
        return rng.standard_normal(size)
    if distribution == "skewed":
        s = SKEW_SIGMA
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
) -> SimulationResult:
    """The whole procedure on `reps` families of directional rows: row i has true mean effects[i]
    (in sd of the replicates) and belongs to study studies[i]; a study gets the next look's seeds
    while one of its rows asks for more (`adaptive`; otherwise every study runs to n_max). A false
    verdict: supported or contradicted on a row with effect 0, the wrong sign on a real effect, or
    negligible on a row whose |effect| is at least the sesoi."""
    rng = np.random.default_rng(seed)
    rows = [Hypothesis("directional", sesoi=sesoi) for _ in effects]
    eff = np.asarray(effects, dtype=float)
    study_ids = sorted(set(studies))
    false_families, fixed_false, right, real, total_n = 0, 0, 0, 0, 0
    for _ in range(reps):
        data = eff[:, None] + draw(rng, distribution, (len(effects), design.n_max))
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


def benchmark(reps: int = 1000, design: Design = Design()) -> str:
    """`python -m harness bench sequential`: the whole procedure by simulation (family-wise error
    with its Monte Carlo error, power, replicates per row) on null rows and a mix, for normal,
    heavy-tailed and skewed values, beside the fixed design at n_K; then the power of the
    designs it was chosen over."""
    global SKEW_SIGMA
    lines = [
        f"Design: looks {design.looks}, alpha {design.alpha:g}, O'Brien-Fleming-type spending, Holm; "
        f"{len(MIX)} rows in {len(set(STUDIES))} studies, {reps} families each",
        "",
        f"{'rows':<6} {'values':<22} {'FWER':>7} {'+-MC':>6} {'fixed n=' + str(design.n_max):>11} {'power':>7} "
        f"{'mean n':>7}",
    ]
    default = SKEW_SIGMA
    scenarios = [("normal", None), ("heavy", None), ("skewed", 0.15), ("skewed", 0.25), ("skewed", 0.5)]
    try:
        for name, effects in (("null", [0.0] * len(MIX)), ("mix", MIX)):
            for dist, sigma in scenarios:
                SKEW_SIGMA = sigma or default
                r = simulate(effects, STUDIES, design, dist, reps=reps, seed=1)
                label = dist if sigma is None else f"skewed ({_skewness(sigma):.2f})"
                power = "" if math.isnan(r.power) else f"{r.power:.3f}"
                lines.append(
                    f"{name:<6} {label:<22} {r.fwer:>7.3f} {r.fwer_se:>6.3f} {r.fixed_fwer:>11.3f} {power:>7} "
                    f"{r.mean_n:>7.1f}"
                )
    finally:
        SKEW_SIGMA = default
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
