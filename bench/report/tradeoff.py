"""Accuracy against energy: one point per configuration (mean over seeds, std as error bars on
both axes), the Pareto front of the configuration means, ANN / binary SNN (N=1) / multi-level
SNN (N>1) drawn with their own marker and colour. Sizes and fonts as every report figure
(bench.report.plots: screen PNG, 7.16 in and 3.5 in PDFs, no font below 7 pt)."""

from __future__ import annotations

import matplotlib.lines
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bench import schema
from bench.report import plots

ENERGY = f"{schema.ENERGY_UJ_PER_IMAGE}"
MARKERS = dict(zip(plots.CATEGORIES, ("s", "o", "^")))
MAX_NAMED = 10  # points named beside them; more would hide each other


def pareto(energy: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """Indices of the configurations no other beats on both axes (less or equal energy and more
    or equal accuracy, one of them strictly), in order of energy."""
    order = np.lexsort((-accuracy, energy))
    front, best = [], -np.inf
    for i in order:
        if accuracy[i] > best:
            front.append(i)
            best = accuracy[i]
    return np.array(front, dtype=int)


def _points(agg: pd.DataFrame) -> pd.DataFrame:
    d = agg[agg[f"{ENERGY}_mean"].notna() & agg["test_acc_pct_mean"].notna()].copy()
    d["category"] = [plots.energy_category(n) for n in d["N"].astype(float)]
    return d


@plots.styled
def tradeoff_figure(agg: pd.DataFrame) -> Figure:
    """The accuracy / energy plane of a study's configurations (one energy setting: groups
    priced otherwise are left out, as in the energy figure)."""
    rows, _ = plots.one_energy_setting(agg)
    d = _points(rows)
    if len(d) < 2:
        raise plots.SkipPlot("fewer than two configurations with both accuracy and energy")
    fig, (ax,) = plots.panel_figure(1, (7.0, 4.8), row_height=2.6)
    e, a = d[f"{ENERGY}_mean"].to_numpy(float), d["test_acc_pct_mean"].to_numpy(float)
    for cat in plots.CATEGORIES:
        m = (d["category"] == cat).to_numpy()
        for i in np.flatnonzero(m):
            r = d.iloc[i]
            cont = ax.errorbar(e[i], a[i], xerr=np.nan_to_num(r[f"{ENERGY}_std"]),
                               yerr=np.nan_to_num(r["test_acc_pct_std"]), fmt=MARKERS[cat],
                               color=plots.CATEGORY_COLORS[cat], ms=5, capsize=2, lw=0.8)
            cont.lines[0].set_gid(f"config:{r['label']}")
    front = pareto(e, a)
    line, = ax.plot(e[front], a[front], ls="--", color="0.3", lw=1, zorder=0)
    line.set_gid("pareto")
    if len(d) <= MAX_NAMED:
        for i in range(len(d)):
            ax.annotate(str(d["label"].iloc[i]), (e[i], a[i]), xytext=(3, 3),
                        textcoords="offset points", fontsize=7)
    if plots._wide(e):
        ax.set_xscale("log")
    ax.set_xlabel("energy per test image (µJ)" + (" (log)" if ax.get_xscale() == "log" else ""))
    ax.set_ylabel("test accuracy (%)")
    shown = [c for c in plots.CATEGORIES if c in set(d["category"])]
    handles = [matplotlib.lines.Line2D([], [], ls="", marker=MARKERS[c], ms=5,
                                       color=plots.CATEGORY_COLORS[c], label=c) for c in shown]
    handles.append(matplotlib.lines.Line2D([], [], ls="--", color="0.3", label="Pareto front"))
    ax.legend(handles=handles, loc="best", fontsize=7)
    plots.title(fig, "Accuracy vs energy per configuration (mean ± std over seeds)")
    return fig


def caption(agg: pd.DataFrame, n_runs: int) -> str:
    rows, note = plots.one_energy_setting(agg)
    d = _points(rows)
    front = d.iloc[pareto(d[f"{ENERGY}_mean"].to_numpy(float),
                          d["test_acc_pct_mean"].to_numpy(float))] if len(d) else d
    return (f"Test accuracy against energy per test image, one point per configuration (mean "
            f"± std over seeds on both axes; {plots.categories_text(d)}), from {n_runs} "
            f"completed runs; dashed: the Pareto front of the means "
            f"({', '.join(map(str, front['label'])) or 'none'}). {note}")
