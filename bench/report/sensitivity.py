"""How the energy claims' verdicts move with the energy model's assumptions.

Every energy claim of `bench figures` (bench.report.figures.EnergyCompare) is judged again with
each run's energy repriced under each setting of a grid (counting x multi-level op pricing, and
the SRAM laws at the default counting: bench.energy.SENSITIVITY), from the counts its record
kept (bench.energy.reprice). Each cell: our ratio or change, its 95 % interval over seeds and
both verdicts (bench.report.verdicts). Records without those counts (written before repricing
existed) cannot be repriced: the matrix then says so in one line and is left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd

from bench.energy import SENSITIVITY, reprice
from bench.errors import BenchError
from bench.record import read_summary
from bench.report.tables import Table
from bench.report.verdicts import HOLDS, NA, effect, fails_bold, judge, seeds_of

# (a run row with its record folder in `path`, energy setting overrides) -> uJ per image
Price = Callable[[pd.Series, dict[str, Any]], float]
# what a record that cannot be repriced raises (no counts kept, a setting it can't take)
REPRICE_ERRORS = (BenchError, ValueError, KeyError, TypeError, AttributeError)


@dataclass(frozen=True)
class Pricing:
    """The grid of energy settings (label, overrides) and the per-run pricing function."""

    grid: tuple[tuple[str, dict[str, Any]], ...]
    price: Price


class CannotReprice(Exception):
    """A run whose record keeps no counts to reprice; the message names it."""


def grid_of(sensitivity: Iterable[dict[str, Any]]) -> tuple[tuple[str, dict[str, Any]], ...]:
    """bench.energy.SENSITIVITY ({label, settings} entries) as (label, overrides) pairs."""
    return tuple((str(item["label"]), dict(item["settings"])) for item in sensitivity)


def default_pricing() -> Pricing:
    """bench.energy's repricing over its SENSITIVITY grid."""
    # summary.json carries large histograms: read and decode each once, not once per setting
    summaries: dict[Any, dict[str, Any]] = {}

    def price(run: pd.Series, overrides: dict[str, Any]) -> float:
        path = run.get("path")
        if path not in summaries:
            summaries[path] = read_summary(path)
        return float(reprice(summaries[path], **overrides).total_uj)

    return Pricing(grid_of(SENSITIVITY), price)


def _repriced(pricing: Pricing, runs: pd.DataFrame, uids: Iterable[str], label: str,
              overrides: dict[str, Any], cache: dict) -> tuple[list[float], list | None]:
    uids = list(uids)
    values = []
    for uid in uids:
        key = (uid, label)
        if key not in cache:
            try:
                cache[key] = pricing.price(runs.loc[uid], overrides)
            except REPRICE_ERRORS as exc:
                raise CannotReprice(f"{uid} ({type(exc).__name__}: {exc})") from None
        values.append(cache[key])
    seeds = seeds_of(runs, uids)
    return values, seeds if seeds is not None and all(s is not None for s in seeds) else None


def matrix(compares: list, runs: pd.DataFrame, pricing: Pricing) -> pd.DataFrame:
    """One row per (energy claim, setting): ours, interval, direction, size. Raises
    CannotReprice when a run's record keeps no counts."""
    rows, cache = [], {}
    for spec in compares:
        for label, overrides in pricing.grid:
            xa, sa = _repriced(pricing, runs, spec.a["uids"], label, overrides, cache)
            xb, sb = _repriced(pricing, runs, spec.b["uids"], label, overrides, cache)
            eff = effect(xa, xb, spec.scale, sa, sb)
            direction, size, evidence = judge(eff, spec.side, spec.low, spec.high)
            ma, mb = float(np.mean(xa)), float(np.mean(xb))
            ours = ma / mb if spec.scale == "ratio" else 100.0 * (ma - mb) / mb
            lo, hi = eff.interval if eff.ok else (math.nan, math.nan)
            rows.append({"claim": spec.quantity + (f" [{spec.facet}]" if spec.facet else ""),
                         "setting": label, "scale": spec.scale, "ours": ours, "low": lo, "high": hi,
                         "direction": direction, "size": size,
                         "point": spec.low is not None and spec.low == spec.high,
                         "evidence": evidence})
    return pd.DataFrame(rows)


def _holds(cells: pd.DataFrame) -> pd.Series:
    """Per cell: the claim holds in its direction, and in its size where the paper gives a
    range (a single reported value can't be confirmed: direction only)."""
    return (cells["direction"] == HOLDS) & ((cells["size"] == HOLDS) | cells["point"]
                                            | (cells["size"] == NA))


def all_hold(cells: pd.DataFrame) -> list[str]:
    """Settings under which every energy claim holds (`_holds`)."""
    per = _holds(cells).groupby(cells["setting"], sort=False).all()
    return [s for s, v in per.items() if v]


def sentence(cells: pd.DataFrame) -> str:
    settings = list(dict.fromkeys(cells["setting"]))
    n = cells["claim"].nunique()
    good = all_hold(cells)
    if good:
        return (f"Settings under which all {n} energy claims hold at once on these runs "
                f"(direction, and size where the paper gives a range): {', '.join(good)}.")
    counts = _holds(cells).groupby(cells["setting"], sort=False).sum()
    best = counts.idxmax()
    closest = (f"the closest, {best}, has {int(counts[best])} of {n}" if counts[best]
               else "none makes even one hold")
    return (f"None of the {len(settings)} settings makes all {n} energy claims hold at once on "
            f"these runs (direction, and size where the paper gives a range); {closest}.")


def table(cells: pd.DataFrame) -> Table:
    def fmt(v: float, scale_ratio: bool) -> str:
        if not np.isfinite(v):
            return "n/a"
        return f"{v:.3g}x" if scale_ratio else f"{v:+.2f} %"

    ratio = cells["scale"] == "ratio"
    display = pd.DataFrame({
        "claim": cells["claim"], "setting": cells["setting"],
        "ours": [fmt(v, r) for v, r in zip(cells["ours"], ratio)],
        "95 % interval": [f"[{fmt(lo, r)}, {fmt(hi, r)}]" if np.isfinite(lo) else "n/a"
                          for lo, hi, r in zip(cells["low"], cells["high"], ratio)],
        "direction": cells["direction"], "size": cells["size"]}).astype(str)
    bold = fails_bold(display)
    numeric = cells.drop(columns=["point"])
    text = ("Each energy claim judged again with every run repriced under each energy setting "
            "(counting x multi-level op pricing, and the SRAM laws at the default counting): "
            "our ratio or change of means, the 95 % interval over seeds and both verdicts. "
            + sentence(cells))
    return Table("sensitivity", numeric, display, bold, text)


__all__ = ["Pricing", "Price", "CannotReprice", "default_pricing", "grid_of", "matrix",
           "all_hold", "sentence", "table"]
