"""Verdicts on our runs: the 95 % interval of an effect over seeds, and what it says about a claim.

    eff = effect(sparse_uj, sew_uj, "change", seeds_a, seeds_b)   # Sparse vs SEW, in %
    direction(eff, "<")            # 'holds' / 'fails' / 'inconclusive'
    size(eff, -30.0, -25.0)        # the paper's 25-30 % lower

Scales: a difference of means ("difference", e.g. accuracy in pp) is judged on Welch's t interval
(scipy.stats.ttest_ind, equal_var=False); a ratio ("ratio", x) or a relative change ("change", %)
on the same interval of the log values (Welch on log values: the interval of the log of the ratio
of geometric means), mapped back. Groups are independent unless their seeds pair them: both
groups ran the same seeds, once each (the seed fixes the data order and the initialisation, so
seed i of one group is matched with seed i of the other): then the interval is the paired t
interval (scipy.stats.ttest_rel) of the per-seed differences.

Direction: 'holds' when the interval excludes the null (0, or ratio 1) on the claimed side,
'fails' when it excludes it on the other side, else 'inconclusive'. Size: 'holds' when the
interval lies inside the paper's range (or beyond its bound for "more than X"), 'fails' when it
misses the range entirely, else 'inconclusive'; a single reported value (a point) can only be
missed ('fails') or not ('inconclusive'). Fewer than 2 runs in a group: no spread, 'inconclusive'.

Seeds to decide (`seeds_needed`): with the observed per-seed standard deviations s_a, s_b (on the
working scale: raw or log) held fixed, the smallest n per group such that the interval's
half-width t_0.975(nu) * sqrt((s_a^2 + s_b^2) / n), nu = (n - 1) (s_a^2 + s_b^2)^2 /
(s_a^4 + s_b^4) (Welch's df for n runs each), is below the distance d from the observed mean
effect to the boundary the interval straddles; paired: t_0.975(n - 1) * s_d / sqrt(n) < d. It is
a planning figure (the means will move with more seeds), not a power analysis.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import scipy.stats

LEVEL = 0.95
HOLDS, FAILS, INCONCLUSIVE, NA = "holds", "fails", "inconclusive", "n/a"
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE, NA)
SCALES = ("difference", "ratio", "change")
MAX_SEEDS = 100_000  # beyond this, "seeds_needed" says "more than"


@dataclass(frozen=True)
class Effect:
    """Group a against group b on the claim's scale, with its 95 % interval over seeds.

    center/lo/hi and sds are on the working scale (raw for a difference, log for a ratio or a
    change); `why` says why there is no interval (fewer than 2 runs, a non-positive value)."""

    scale: str
    center: float
    lo: float
    hi: float
    n: tuple[int, int]
    paired: bool = False
    sds: tuple[float, ...] = ()  # (s_a, s_b), or (s_d,) when paired
    why: str = ""

    @property
    def ok(self) -> bool:
        return math.isfinite(self.lo) and math.isfinite(self.hi)

    @property
    def estimate(self) -> float:
        return to_claim(self.center, self.scale)

    @property
    def interval(self) -> tuple[float, float]:
        return to_claim(self.lo, self.scale), to_claim(self.hi, self.scale)

    @property
    def pairing(self) -> str:
        """'paired by seed, paired t on log values' / 'independent groups, Welch'."""
        test = "paired t" if self.paired else "Welch"
        logs = "" if self.scale == "difference" else " on log values"
        return f"{'paired by seed' if self.paired else 'independent groups'}, {test}{logs}"


def to_claim(x: float, scale: str) -> float:
    """Working scale -> the claim's scale (pp, x, %)."""
    if scale == "difference" or math.isnan(x):
        return x
    return math.exp(x) if scale == "ratio" else 100.0 * math.expm1(x)


def to_work(v: float, scale: str) -> float:
    """The claim's scale -> working scale (bounds of the paper's range)."""
    if scale == "difference":
        return v
    r = v if scale == "ratio" else 1.0 + v / 100.0
    return math.log(r) if r > 0 else -math.inf


def _clean(values: Sequence[float]) -> np.ndarray:
    v = np.asarray(list(values), dtype=float)
    return v[np.isfinite(v)]


def effect(a: Sequence[float], b: Sequence[float], scale: str,
           seeds_a: Sequence | None = None, seeds_b: Sequence | None = None) -> Effect:
    """Group a against b: a - b ("difference"), a / b ("ratio") or a / b - 1 in % ("change")."""
    if scale not in SCALES:
        raise ValueError(f"scale {scale!r} is not one of {SCALES}")
    pairs = _pairs(a, b, seeds_a, seeds_b)
    xa, xb = (np.array([p[i] for p in pairs]) for i in (0, 1)) if pairs else (_clean(a), _clean(b))
    n = (len(xa), len(xb))
    if scale != "difference":
        if (xa <= 0).any() or (xb <= 0).any():
            return Effect(scale, math.nan, math.nan, math.nan, n,
                          why="a value is not positive: no interval on log values")
        xa, xb = np.log(xa), np.log(xb)
    center = float(xa.mean() - xb.mean()) if min(n) else math.nan
    if min(n) < 2:
        return Effect(scale, center, math.nan, math.nan, n,
                      why=f"{n[0]} + {n[1]} runs: no seed spread to judge on")
    if pairs:
        d = xa - xb
        sds = (float(d.std(ddof=1)),)
        lo, hi = _interval(lambda: scipy.stats.ttest_rel(xa, xb), center, sds)
    else:
        sds = (float(xa.std(ddof=1)), float(xb.std(ddof=1)))
        lo, hi = _interval(lambda: scipy.stats.ttest_ind(xa, xb, equal_var=False), center, sds)
    return Effect(scale, center, lo, hi, n, paired=bool(pairs), sds=sds)


def _pairs(a, b, seeds_a, seeds_b) -> list[tuple[float, float]]:
    """(a_i, b_i) matched by seed when both groups ran the same seeds once each, else []."""
    if seeds_a is None or seeds_b is None:
        return []
    ka, kb = list(seeds_a), list(seeds_b)
    if len(ka) != len(list(a)) or len(kb) != len(list(b)) or len(ka) < 2:
        return []
    if any(k is None or (isinstance(k, float) and math.isnan(k)) for k in ka + kb):
        return []
    if len(set(ka)) != len(ka) or set(ka) != set(kb):
        return []
    va, vb = dict(zip(ka, a)), dict(zip(kb, b))
    pairs = [(float(va[k]), float(vb[k])) for k in sorted(ka, key=str)]
    if not all(math.isfinite(x) and math.isfinite(y) for x, y in pairs):
        return []
    return pairs


def seeds_of(runs: pd.DataFrame, uids: Sequence[str]) -> list | None:
    """The seeds of these runs (`runs` indexed by uid), in their order, for `effect` to pair
    them by; None when the runs record no seed."""
    return list(runs.loc[list(uids), "seed"]) if "seed" in runs.columns else None


def _interval(test, center: float, sds: tuple[float, ...]) -> tuple[float, float]:
    if all(s == 0 for s in sds):  # no spread at all: the interval is the point itself
        return center, center
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nearly identical values: still fine
        ci = test().confidence_interval(LEVEL)
    return float(ci.low), float(ci.high)


# ----------------------------------------------------------------------------- verdicts

def direction(eff: Effect, side: str) -> str:
    """Is the effect below (side '<') or above ('>') the null (0 difference, ratio 1)?"""
    if not math.isfinite(eff.center):
        return NA
    if not eff.ok:
        return INCONCLUSIVE
    below, above = eff.hi < 0, eff.lo > 0
    if side == "<":
        return HOLDS if below else FAILS if above else INCONCLUSIVE
    return HOLDS if above else FAILS if below else INCONCLUSIVE


def size(eff: Effect, low: float | None, high: float | None) -> str:
    """Does the interval lie inside the paper's [low, high] (None: unbounded on that side)?
    A point (low == high) can be missed but never confirmed."""
    if low is None and high is None:
        return NA
    if not math.isfinite(eff.center):
        return NA
    if not eff.ok:
        return INCONCLUSIVE
    lo_b, hi_b = _bounds(eff.scale, low, high)
    if eff.hi < lo_b or eff.lo > hi_b:
        return FAILS
    if low is not None and high is not None and low == high:
        return INCONCLUSIVE
    return HOLDS if lo_b <= eff.lo and eff.hi <= hi_b else INCONCLUSIVE


def _bounds(scale: str, low: float | None, high: float | None) -> tuple[float, float]:
    return (-math.inf if low is None else to_work(low, scale),
            math.inf if high is None else to_work(high, scale))


def seeds_needed(eff: Effect, boundaries: Sequence[float]) -> int | None:
    """Runs per group that would decide an inconclusive verdict at the observed spread (module
    docstring); `boundaries` on the claim's scale (0 / 1 for a direction, the range's ends for
    a size). None: no spread known, or the mean sits on a boundary (no number decides)."""
    if not eff.ok or not eff.sds:
        return None
    work = [to_work(v, eff.scale) for v in boundaries]
    inside = [w for w in work if math.isfinite(w) and eff.lo <= w <= eff.hi]
    if not inside:
        return None
    d = min(abs(eff.center - w) for w in inside)
    if d == 0:
        return None
    for n in range(2, MAX_SEEDS + 1):
        if _half_width(eff.sds, n) < d:
            return n
    return MAX_SEEDS + 1


def _half_width(sds: tuple[float, ...], n: int) -> float:
    if len(sds) == 1:
        return float(scipy.stats.t.ppf(0.5 + LEVEL / 2, n - 1)) * sds[0] / math.sqrt(n)
    va, vb = sds[0] ** 2, sds[1] ** 2
    df = (n - 1) * (va + vb) ** 2 / (va ** 2 + vb ** 2)
    return float(scipy.stats.t.ppf(0.5 + LEVEL / 2, df)) * math.sqrt((va + vb) / n)


# ----------------------------------------------------------------------------- text

UNITS = {"difference": "pp", "ratio": "x", "change": "%"}


def fmt_value(v: float, scale: str, signed: bool = True) -> str:
    if not math.isfinite(v):
        return "n/a"
    if scale == "ratio":
        return f"{v:.3g}x"
    text = f"{v:+.2f}" if signed else f"{v:.2f}"
    return f"{text} {UNITS[scale]}"


def interval_text(eff: Effect, unit: str | None = None) -> str:
    """'-0.74 %, 95 % interval [-2.10, +0.62] % (3 + 3 seeds, independent groups, on log
    values)', or why there is none."""
    if not math.isfinite(eff.center):
        return eff.why or "no estimate"
    est = fmt_value(eff.estimate, eff.scale)
    if not eff.ok:
        return f"{est}; {eff.why}"
    lo, hi = eff.interval
    u = unit or UNITS[eff.scale]
    if eff.scale == "ratio":
        span = f"[{lo:.3g}, {hi:.3g}]x"
    else:
        span = f"[{lo:+.2f}, {hi:+.2f}] {u}"
    return (f"{est}, 95 % interval {span} over {eff.n[0]} + {eff.n[1]} seeds "
            f"({eff.pairing})")


def decide_text(eff: Effect, boundaries: Sequence[float]) -> str:
    """For an inconclusive verdict with an interval: roughly how many seeds per group would
    decide it."""
    n = seeds_needed(eff, boundaries)
    if n is None:
        return "the mean sits on the boundary: more seeds alone will not decide it"
    if n > MAX_SEEDS:
        return f"more than {MAX_SEEDS:,} seeds per group would be needed at this spread"
    return f"about {n} seeds per group would decide it at this spread"


def judge(eff: Effect, side: str | None, low: float | None,
          high: float | None) -> tuple[str, str, str]:
    """(direction, size, evidence) of one claim: its interval and, where a verdict is
    inconclusive, the seeds that would decide it."""
    null = 0.0 if eff.scale != "ratio" else 1.0
    d = direction(eff, side) if side else NA
    s = size(eff, low, high)
    notes = [interval_text(eff)]
    if not eff.ok and INCONCLUSIVE in (d, s):
        return d, s, f"{notes[0]} (at least 2 runs per group are needed to see a spread)"
    if d == INCONCLUSIVE:
        notes.append(f"direction: {decide_text(eff, [null])}")
    if s == INCONCLUSIVE:
        bounds = [v for v in (low, high) if v is not None]
        notes.append(f"size: {decide_text(eff, bounds)}")
    return d, s, "; ".join(notes)


def fails_bold(display: pd.DataFrame) -> pd.DataFrame:
    """A table's bold mask: its 'fails' verdicts, so a claim our runs contradict stands out."""
    return display.apply(lambda col: col.eq(FAILS) if col.name in ("direction", "size")
                         else pd.Series(False, index=col.index))
