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

`harness.stats.simulation.simulate` checks the family-wise error of the whole procedure (looks,
continuation, Holm) on null rows, a mix of null and real effects, and skewed and heavy-tailed
replicate values; `tests/test_sequential.py` holds it to 0.05 within its Monte Carlo error.
`harness.stats.simulation.compare_designs` prints the power of this procedure next to the fixed
design at n_1 and at n_K and to anytime-valid e-values with e-Holm (`python -m harness bench
sequential`).
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
    family = _Family.empty(len(rows))
    for k, n in enumerate(design.looks, start=1):
        for i, (x, row) in enumerate(zip(xs, rows, strict=False)):
            family.test(i, x, row, k, n, design)
        family.holm_step(k, design.alpha)
    level = family.level_next(design.alpha, best_case)
    return [family.outcome(i, x, row, design, level) for i, (x, row) in enumerate(zip(xs, rows, strict=False))]


@dataclass
class _Family:
    """What `replay` has established about each row of a family of m rows, look by look."""

    p_rep: np.ndarray  # (m,) repeated p-value so far
    side: list[str]  # the verdict of the smallest level crossed so far
    reached: np.ndarray  # (m,) the look a row was decided at (0: undecided)
    levels: list[dict[str, float]]  # per verdict, the smallest level crossed so far
    last: list[int]  # the last look a row was tested at
    flat_at: list[int]  # the last look a row had enough values but no spread
    gap: np.ndarray  # (m,) a look its study reached held too few of its values
    p_adj: np.ndarray  # (m,) Holm's adjusted repeated p at the look a row was decided at, else the last

    @classmethod
    def empty(cls, m: int) -> _Family:
        return cls(
            np.full(m, np.nan),
            [""] * m,
            np.zeros(m, dtype=int),
            [{} for _ in range(m)],
            [0] * m,
            [0] * m,
            np.zeros(m, dtype=bool),
            np.full(m, np.nan),
        )

    def test(self, i: int, x: np.ndarray, row: Hypothesis, k: int, n: int, design: Design) -> None:
        """Row i at look k (n replicates), if its study reached it: the levels it crossed and, while
        it is undecided, its repeated p-value; a look with too few of its values is a gap, one
        without spread gets no test."""
        if len(x) < n:
            return
        v = at_look(x, n)
        if len(v) < design.looks[0]:
            self.gap[i] = True
            return
        if _flat(v):
            self.flat_at[i] = k
            return
        self.last[i] = k
        for verdict, p in look_pvalues(v, len(v), row).items():
            self.levels[i][verdict] = min(self.levels[i].get(verdict, 1.0), level_crossed(p, k, design))
        if self.reached[i] == 0 and self.levels[i]:
            self.side[i] = min(self.levels[i], key=self.levels[i].get)
            self.p_rep[i] = self.levels[i][self.side[i]]

    def holm_step(self, k: int, alpha: float) -> None:
        """Holm's step-down at look k over the whole family (decided rows enter with p = 0, untested
        rows with a gap with p = 1); the open rows it rejects are decided at k."""
        adjusted = holm(np.where(self.reached > 0, 0.0, np.where(np.isnan(self.p_rep) & self.gap, 1.0, self.p_rep)))
        open_ = self.reached == 0
        self.p_adj[open_] = adjusted[open_]  # a decided row keeps the adjusted p it was decided with
        self.reached[open_ & (adjusted <= alpha)] = k

    def level_next(self, alpha: float, best_case: bool) -> float:
        """The Holm level an undecided row faces next: alpha / (undecided rows), or alpha (`best_case`)."""
        undecided = int(np.sum((self.reached == 0) & (~np.isnan(self.p_rep) | self.gap)))
        return alpha / (1 if best_case else max(1, undecided))

    def outcome(self, i: int, x: np.ndarray, row: Hypothesis, design: Design, level: float) -> Outcome:
        """Row i's outcome after the last look; an undecided row's conditional power at `level`."""
        p_adj = float(self.p_adj[i])
        if self.reached[i]:
            look = int(self.reached[i])
            return Outcome(self.side[i], look, design.looks[look - 1], float(self.p_rep[i]), math.nan, False, p_adj)
        p_gap = 1.0 if self.gap[i] else math.nan
        if self.last[i] == 0 and self.flat_at[i]:
            # values without spread: no test, and more seeds of the same will not give one
            return Outcome("inconclusive", 0, design.looks[self.flat_at[i] - 1], p_gap, math.nan, False, p_adj)
        if self.last[i] == 0:
            # a row whose replicates lost values (NaN) in a look its study ran asks for the next look,
            # which may hold enough of them
            more = design.looks[0] <= len(x) < design.n_max and bool(np.any(~np.isnan(x)))
            return Outcome("withheld", 0, len(x), p_gap, math.nan, more, p_adj)
        n_used = design.looks[self.last[i] - 1]
        cp = conditional_power(at_look(x, n_used), row, design, level, n=n_used)
        more = n_used < design.n_max and cp >= CONDITIONAL_POWER_FLOOR
        return Outcome("inconclusive", 0, n_used, float(self.p_rep[i]), cp, more, p_adj)


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
            f"no spread: all {r['n']} replicates are equal (value {r['estimate']:.6g}), so no test is possible; a "
            "zero-variance sample is no evidence"
        )
    if o.verdict != "inconclusive":
        if positions is not None and positions < o.n:
            return (
                f"decided at the family's look {o.look} ({o.n} replicates), which its study did not run: its "
                f"repeated p from its last look, n = {positions}, met Holm's level once other rows were decided "
                "there (Maurer and Bretz's recycling)"
            )
        return ""
    cp = f"conditional power at n = {design.n_max}: {o.conditional_power:.2f}"
    if o.asks_more:
        return (
            f"undecided at n = {r['n']}; {cp}, at or above the floor {CONDITIONAL_POWER_FLOOR:g}: more seeds could "
            "decide it (its study runs the next look while such a row is open)"
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
