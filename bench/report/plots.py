"""Report figures: matplotlib Figure objects (no pyplot state), saved as deterministic PNG + PDF.

Each `*_figure` function takes already-labelled frames and returns a Figure, or raises
`SkipPlot(reason)` when its inputs are absent; the reason goes into index.md as a sentence.
Data lines carry gid "series:<label>" so tests (and readers of the Figure) can find them.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import textwrap
from pathlib import Path
from typing import Callable, Iterator

import matplotlib
import matplotlib.lines
import matplotlib.patches
import matplotlib.ticker
import matplotlib.text
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bench import schema
from bench.report.load import ALL_ENERGY_TERMS
from bench.report.tables import ENERGY_TITLES, fmt_number, sum_rows

STYLE = {
    "font.family": "DejaVu Sans",  # ships with matplotlib: same glyphs on every machine
    "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 8,
    "xtick.labelsize": 9, "ytick.labelsize": 9, "axes.grid": True, "grid.alpha": 0.3,
    "savefig.dpi": 150, "pdf.compression": 6, "pdf.fonttype": 42, "svg.hashsalt": "bench",
    "image.cmap": "viridis",
}
# No creation date, no library version: the same records give byte-identical files.
PNG_METADATA = {"Software": None}
PDF_METADATA = {"Creator": "bench report", "Producer": None, "CreationDate": None}
WIDE_RANGE = 30.0  # log y when max/min of the positive values exceeds this
COLUMN_MAX_HEIGHT = 4.5  # inches: a one-column figure leaves room for its caption


# Paper sizes, saved as PDF: one column (3.5 in, IEEE/ACM two-column layouts) and the full
# text width (7.16 in), every font >= MIN_PAPER_PT. The screen size (PNG) keeps each figure's own.
PAPER_WIDTHS = {"column": 3.5, "page": 7.16}
PAPER_SUFFIX = {"column": "1col", "page": ""}
MIN_PAPER_PT = 7.0
PAPER_STYLE = STYLE | {"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8,
                       "legend.fontsize": 7, "legend.title_fontsize": 7, "xtick.labelsize": 7,
                       "ytick.labelsize": 7, "figure.titlesize": 8.5}
_SIZE: contextvars.ContextVar[str] = contextvars.ContextVar("bench_figure_size", default="screen")


class SkipPlot(Exception):
    """A figure whose inputs are absent; the message says why (one sentence)."""


def styled(func: Callable[..., Figure]) -> Callable[..., Figure]:
    """Build the figure under the report style (fonts are fixed when artists are created); at a
    paper size, under the paper style and with no font below MIN_PAPER_PT."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs) -> Figure:
        paper = _SIZE.get() != "screen"
        with matplotlib.rc_context(PAPER_STYLE if paper else STYLE):
            fig = func(*args, **kwargs)
            plain_ticks(fig)
            if paper:
                enforce_min_font(fig)
            return fig

    return wrapper


@contextlib.contextmanager
def paper_size(size: str) -> Iterator[None]:
    """Figures built inside are `size` ('column' or 'page') wide, fonts >= MIN_PAPER_PT."""
    token = _SIZE.set(size)
    try:
        yield
    finally:
        _SIZE.reset(token)


def panel_figure(n: int, screen: tuple[float, float], screen_cols: int | None = None,
                 row_height: float = 2.3, paper_cols: int | None = None,
                 column_cols: int | None = None, column_row_height: float | None = None,
                 extra_height: float = 0.4, **kw) -> tuple[Figure, list]:
    """A figure of n panels laid out for its size, not scaled: at the screen size
    `screen_cols` per row (default all); one page wide at most `paper_cols` (default 3) per
    row; one column wide `column_cols` (default 1) per row; rows `row_height` inches high
    (`column_row_height` at a column), plus `extra_height` for the title and legend."""
    size = _SIZE.get()
    cols = screen_cols or n
    if size == "screen":
        fig = Figure(figsize=screen, layout="constrained")
    else:
        wanted = (paper_cols or 3) if size == "page" else (column_cols or 1)
        cols = max(1, min(n, wanted))
        rows = math.ceil(n / cols)
        height = column_row_height if size == "column" and column_row_height else row_height
        fig = Figure(figsize=(PAPER_WIDTHS[size], rows * height + extra_height),
                     layout="constrained")
    axes = np.atleast_1d(fig.subplots(math.ceil(n / cols), cols, squeeze=False, **kw)).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, list(axes[:n])


def size_now() -> str:
    """'screen', 'page' or 'column': the size the figure being built is laid out for."""
    return _SIZE.get()


def legend_below(fig: Figure, axes=None, handles=None, ncol: int | None = None, **kw):
    """One legend for the figure, under its panels (constrained layout makes room for it), so
    it never covers data; entries of several panels are merged by label."""
    if handles is None:
        found: dict[str, object] = {}
        for ax in axes if axes is not None else fig.axes:
            for handle, label in zip(*ax.get_legend_handles_labels()):
                found.setdefault(label, handle)
        handles = [h for h in found.values()]
        labels = list(found)
    else:
        labels = [h.get_label() for h in handles]
    if not handles:
        return None
    ncol = ncol or {"column": 2, "page": 4}.get(_SIZE.get(), 6)
    return fig.legend(handles, labels, loc="outside lower center",
                      ncol=max(1, min(len(handles), ncol)), **kw)


def title(fig: Figure, text: str) -> None:
    """The figure's title, wrapped to a paper width."""
    size = _SIZE.get()
    if size != "screen":
        text = textwrap.fill(text, int(PAPER_WIDTHS[size] * 72 / (0.55 * 8.5)))
    fig.suptitle(text)


def enforce_min_font(fig: Figure) -> None:
    """Raise every text of the figure to MIN_PAPER_PT: tick labels through the axes' tick
    settings (ticks made at draw time copy them), every other text directly."""
    for ax in fig.axes:
        ax.tick_params(which="both", labelsize=max(MIN_PAPER_PT, _tick_size(ax)))
    for text in fig.findobj(matplotlib.text.Text):
        if text.get_fontsize() < MIN_PAPER_PT:
            text.set_fontsize(MIN_PAPER_PT)


def compact_number(value: float, _pos=None) -> str:
    """Tick text without exponents or offsets: 0.05, 12, 1.5k, 20k, 3M (a true minus sign).
    matplotlib's log and offset labels set exponents at 0.7x the tick size (4.9 pt at 7 pt)."""
    if value == 0 or not np.isfinite(value):
        return "0"
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= div:
            return f"{value / div:.3g}{suffix}".replace("-", "\N{MINUS SIGN}")
    return f"{value:.3g}".replace("-", "\N{MINUS SIGN}")


def plain_ticks(fig: Figure) -> None:
    """Every numeric axis (linear or log) labelled with compact plain numbers; log axes label
    their decades only."""
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            fmt = axis.get_major_formatter()
            if isinstance(fmt, (matplotlib.ticker.ScalarFormatter,
                                matplotlib.ticker.LogFormatter)):
                axis.set_major_formatter(matplotlib.ticker.FuncFormatter(compact_number))
                if axis.get_scale() == "log":
                    axis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def _tick_size(ax) -> float:
    labels = ax.xaxis.get_ticklabels() + ax.yaxis.get_ticklabels()
    return min((t.get_fontsize() for t in labels), default=MIN_PAPER_PT)


def save_figure(fig: Figure, stem: Path) -> list[Path]:
    """stem.png at the screen size (headless Agg canvas)."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    png = stem.with_suffix(".png")
    with matplotlib.rc_context(STYLE):
        fig.savefig(png, metadata=PNG_METADATA)
    return [png]


def save_paper_figure(fig: Figure, stem: Path, size: str) -> Path:
    """The figure as built at a paper size: stem.pdf one page wide, stem-1col.pdf one column."""
    path = stem.with_suffix(".pdf") if size == "page" else stem.with_name(
        f"{stem.name}-{PAPER_SUFFIX[size]}.pdf")
    with matplotlib.rc_context(PAPER_STYLE):
        fig.savefig(path, metadata=PDF_METADATA)
    return path


def colors(labels: list[str]) -> dict[str, tuple]:
    cmap = matplotlib.colormaps["tab10"]
    return {label: cmap(i % 10) for i, label in enumerate(labels)}


def maybe_log(ax, values: np.ndarray) -> None:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    if len(v) and v.max() / v.min() > WIDE_RANGE:
        ax.set_yscale("log")


# ----------------------------------------------------------------------------- avalanche

def avalanche_data(runs: pd.DataFrame, layers: pd.DataFrame) -> pd.DataFrame:
    """Per (label, k): spikes mean/std over seeds, rate mean/std, max spike (max over seeds),
    the per-neuron bound N and the per-image bound N x T x neurons of that sum."""
    sums = sum_rows(layers, runs).merge(runs[["uid", "label", "T", "N"]], on="uid")
    if sums.empty:
        return sums
    levels = sums[schema.LEVELS].astype(float).fillna(sums["N"].astype(float))
    neurons = sums[schema.NEURONS].astype(float)
    rate = sums[schema.RATE].astype(float)
    T = sums["T"].astype(float)
    spikes = sums[schema.SPIKES_PER_IMAGE]
    sums = sums.assign(**{schema.LEVELS: levels, schema.RATE: rate.fillna(spikes / (neurons * T)),
                          "bound": levels * T * neurons})
    g = sums.groupby(["label", "k"], sort=True)
    # the layers.csv names stay the columns' names (the figure reads them so)
    out = g.agg(**{"spikes": (schema.SPIKES_PER_IMAGE, "mean"),
                   "spikes_std": (schema.SPIKES_PER_IMAGE, "std"),
                   schema.RATE: (schema.RATE, "mean"), "rate_std": (schema.RATE, "std"),
                   schema.MAX_SPIKE: (schema.MAX_SPIKE, "max"),
                   schema.LEVELS: (schema.LEVELS, "max"), "bound": ("bound", "max"),
                   "runs": ("uid", "nunique")})
    return out.reset_index()


@styled
def avalanche_figure(runs: pd.DataFrame, layers: pd.DataFrame, order: list[str]) -> Figure:
    """Three panels along depth (sum0..sumK), one series per group (architecture):
    (a) spikes per image, with the bound N x T x neurons a multi-level neuron per element
        could emit; (b) spikes per neuron per timestep vs the per-neuron bound N;
    (c) the largest single spike count seen vs N (a SEW sum can exceed it, a barrier cannot).
    One column wide, (a) and (c) side by side ((b) is (a) divided by the sizes, left out).
    The legend sits under the panels.
    """
    data = avalanche_data(runs, layers)
    if data.empty:
        raise SkipPlot("no residual-sum probes (sum0..sumK) in the test-split layer statistics "
                       "of the completed runs (VGG and ANN models have none)")
    labels = [lab for lab in order if lab in set(data["label"])]
    color = colors(labels)
    panels = [("spikes", "spikes_std", "spikes per image", "(a) spikes per image"),
              (schema.RATE, "rate_std", "spikes / neuron / timestep", "(b) per neuron vs N"),
              (schema.MAX_SPIKE, None, "largest spike count z", "(c) largest spike vs N")]
    if size_now() == "column":
        panels.pop(1)
    fig, axes = panel_figure(len(panels), (13.5, 4.6), row_height=2.0, paper_cols=3,
                             column_cols=2, extra_height=0.9)
    ks = sorted(data["k"].unique())
    for ax, (col, err, ylabel, name) in zip(axes, panels):
        for lab in labels:
            d = data[data["label"] == lab]
            yerr = d[err].fillna(0).to_numpy(float) if err else None
            cont = ax.errorbar(d["k"].to_numpy(float), d[col].to_numpy(float), yerr=yerr,
                               marker="o", ms=3.5, capsize=2, color=color[lab],
                               label=f"{lab} ({_runs(d['runs'].max())})")
            cont.lines[0].set_gid(f"series:{lab}")
        ax.set_xlabel("residual sum k")
        ax.set_ylabel(ylabel)
        ax.set_title(name)
        # numbers, not 'sum0sum1...': eight names run together at a paper width
        ax.set_xticks(ks, [str(k) for k in ks])
    by_col = {p[0]: ax for p, ax in zip(panels, axes)}
    _draw_bounds(by_col, data, labels, color)
    maybe_log(by_col["spikes"], np.r_[data["spikes"], data["bound"]])
    if schema.RATE in by_col:
        maybe_log(by_col[schema.RATE], np.r_[data[schema.RATE], data[schema.LEVELS]])
    legend_below(fig, axes, ncol=2 if size_now() == "column" else 4)
    title(fig, "Spike activity at each residual sum along depth (mean ± std over seeds)")
    return fig


def _runs(n: float) -> str:
    return f"{int(n)} run" + ("" if int(n) == 1 else "s")


def _draw_bounds(by_col: dict, data: pd.DataFrame, labels: list[str], color: dict) -> None:
    """Dashed bounds: one grey line when all groups share them, else one per group."""
    per_group = {lab: data[data["label"] == lab] for lab in labels}
    same = len({tuple(d["bound"].round(6)) for d in per_group.values()}) == 1
    for lab, d in per_group.items():
        if d["bound"].notna().any():
            c = "0.4" if same else color[lab]
            name = "bound N·T·neurons" + ("" if same else f" ({lab})")
            line, = by_col["spikes"].plot(d["k"].to_numpy(float), d["bound"].to_numpy(float),
                                          ls="--", color=c, label=name)
            line.set_gid(f"bound:{lab}")
        if same:
            break
    for n in sorted(data[schema.LEVELS].dropna().unique()):
        for col in (schema.RATE, schema.MAX_SPIKE):
            if col in by_col:
                line = by_col[col].axhline(n, ls="--", color="0.4", label=f"bound N={n:g}")
                line.set_gid(f"bound:N={n:g}")


# ----------------------------------------------------------------------------- gradients

def block_order(name: str) -> tuple:
    """stem < block0/stage0 < ... < head/classifier; unknown names last, alphabetically."""
    digits = "".join(ch for ch in name if ch.isdigit())
    if name == "stem":
        return (0, 0, name)
    if digits and name.rstrip("0123456789") in ("block", "stage", "layer"):
        return (1, int(digits), name)
    if name in ("head", "classifier", "fc"):
        return (2, 0, name)
    return (3, 0, name)


@styled
def gradient_figure(runs: pd.DataFrame, grads: pd.DataFrame, order: list[str],
                    max_panels: int = 6) -> Figure:
    """Per-block gradient L2 norm over training, one panel per variant (mean over seeds),
    and a last panel with each block's norm averaged over training, one series per variant.
    One legend under the panels: the blocks (colour by depth), then the variants."""
    g = grads[grads[schema.GROUP].astype(str) != schema.TOTAL_GROUP]
    g = g.merge(runs[["uid", "label"]], on="uid")
    if g.empty:
        raise SkipPlot("no per-block gradient norms (grads.csv) in the completed runs")
    labels = [lab for lab in order if lab in set(g["label"])]
    blocks = sorted(g[schema.GROUP].astype(str).unique(), key=block_order)
    size = size_now()
    shown = labels[:max_panels if size != "column" else 3]
    n = len(shown) + 1
    legend_rows = math.ceil((len(blocks) + len(labels)) / (3 if size == "column" else 6))
    fig, axes = panel_figure(n, (3.3 * n + 0.5, 4.6), sharey=True, row_height=1.9,
                             paper_cols=4, column_cols=2, column_row_height=1.55,
                             extra_height=0.75 + 0.14 * legend_rows)
    cmap = matplotlib.colormaps["viridis"]
    shade = {b: cmap(i / max(len(blocks) - 1, 1)) for i, b in enumerate(blocks)}
    curve = g.groupby(["label", schema.GROUP, schema.STEP], sort=True)[schema.GRAD_NORM].mean()
    curve = curve.reset_index()
    for ax, lab in zip(axes, shown):
        for b in blocks:
            d = curve[(curve["label"] == lab) & (curve[schema.GROUP] == b)]
            ax.plot(d[schema.STEP].to_numpy(float), d[schema.GRAD_NORM].to_numpy(float),
                    color=shade[b], lw=1.2, label=b)
        ax.set_title(lab, fontsize=9 if size == "screen" else None)
        ax.set_xlabel("training step")
    axes[0].set_ylabel("gradient L2 norm")
    variants = _gradient_summary(axes[-1], g, labels, blocks)
    maybe_log(axes[0], g[schema.GRAD_NORM].to_numpy())
    for ax in axes[:-1]:
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(3))
    block_lines = [matplotlib.lines.Line2D([], [], color=shade[b], lw=1.5, label=b)
                   for b in blocks]
    legend_below(fig, handles=block_lines + variants, ncol=3 if size == "column" else 6)
    note = "" if len(shown) == len(labels) else f" (first {len(shown)} of {len(labels)} variants)"
    title(fig, f"Per-block gradient norm over training{note}")
    return fig


def _gradient_summary(ax, g: pd.DataFrame, labels: list[str], blocks: list[str]) -> list:
    """Mean over training per block and run, then mean ± std over seeds; returns the
    variants' legend handles."""
    per_run = g.groupby(["label", "uid", schema.GROUP])[schema.GRAD_NORM].mean().reset_index()
    stats = per_run.groupby(["label", schema.GROUP])[schema.GRAD_NORM].agg(["mean", "std", "count"])
    color = colors(labels)
    pos = {b: i for i, b in enumerate(blocks)}
    handles = []
    for lab in labels:
        d = stats.loc[lab].reset_index()
        d = d.assign(x=d[schema.GROUP].map(pos)).sort_values("x")
        cont = ax.errorbar(d["x"].to_numpy(float), d["mean"].to_numpy(float),
                           yerr=d["std"].fillna(0).to_numpy(float), marker="o", ms=3,
                           capsize=2, color=color[lab], label=lab)
        cont.lines[0].set_gid(f"series:{lab}")
        handles.append(cont)
    ax.set_xticks(range(len(blocks)), blocks, rotation=90)
    ax.set_xlabel("block (depth order)")
    ax.set_title("mean over training")
    return handles


# ----------------------------------------------------------------------------- levels

@styled
def levels_figure(agg: pd.DataFrame, facets: list[str]) -> Figure:
    """Heatmaps over T x N of accuracy (%) and energy (uJ / image), one row per facet value
    combination (e.g. per architecture); cells annotated, missing cells blank."""
    agg = agg[agg["N"].notna()] if "N" in agg.columns else agg  # an ANN has no T x N
    if not {"T", "N"} <= set(agg.columns) or agg["T"].nunique() < 2 or agg["N"].nunique() < 2:
        raise SkipPlot("T and N were not both swept (the levels plot needs a T x N grid)")
    groups = list(agg.groupby(facets, sort=True, dropna=False)) if facets else [((), agg)]
    groups = [(name, d) for name, d in groups if len(d) > 1]
    if not groups:
        raise SkipPlot("no architecture has more than one (T, N) cell")
    Ts, Ns = sorted(agg["T"].unique()), sorted(agg["N"].unique())
    size = size_now()
    # a column holds the facets' rows within COLUMN_MAX_HEIGHT; a page 2 facets per row
    row_h = min(1.75, (COLUMN_MAX_HEIGHT - 0.5) / len(groups)) if size == "column" else 1.9
    fig, flat = panel_figure(2 * len(groups), (9.5, 3.4 * len(groups) + 0.4), screen_cols=2,
                             row_height=row_h, paper_cols=4, column_cols=2, extra_height=0.45)
    axes = [flat[2 * i:2 * i + 2] for i in range(len(groups))]
    panels = (("test_acc_pct_mean", "accuracy (%)", "viridis"),
              (f"{schema.ENERGY_UJ_PER_IMAGE}_mean", "energy (µJ / image)", "magma_r"))
    for row, (name, d) in zip(axes, groups):
        facet = ", ".join(_facet_value(k, v) for k, v in zip(facets, np.atleast_1d(name)))
        for ax, (col, unit, cmap) in zip(row, panels):
            grid = d.pivot_table(index="T", columns="N", values=col, aggfunc="mean")
            grid = grid.reindex(index=Ts, columns=Ns)
            im = ax.imshow(grid.to_numpy(float), origin="lower", cmap=cmap, aspect="auto")
            im.set_gid(f"heatmap:{col}:{facet}")
            _annotate(ax, grid, 1 if col.startswith("test_acc") else None, size != "screen")
            ax.set_xticks(range(len(Ns)), [_fmt_tick(n) for n in Ns])
            ax.set_yticks(range(len(Ts)), [_fmt_tick(t) for t in Ts])
            ax.set_xlabel("N (levels)" if size != "screen" else "N (spike levels per timestep)")
            ax.set_ylabel("T (timesteps)")
            if size == "screen":
                ax.set_title(f"{unit}" + (f" — {facet}" if facet else ""), fontsize=9)
            else:  # the facet on a line of its own: a panel is ~1.6 in wide
                ax.set_title(f"{facet}\n{unit}" if facet else unit)
            ax.grid(False)
            bar = fig.colorbar(im, ax=ax, label=unit if size == "screen" else None)
            bar.ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(4))
    title(fig, "Latency / levels trade: T x N (mean over seeds)")
    return fig


def _facet_value(key: str, value) -> str:
    from bench.report.tables import display_arch

    return display_arch(value) if key == "arch" else f"{key}={_fmt_tick(value)}"


def _fmt_tick(value) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _annotate(ax, grid: pd.DataFrame, digits: int | None, paper: bool = False) -> None:
    """Each cell's value on it; at a paper size in at most 4 characters (1.4k), so a cell a
    quarter of a 1.6 in panel wide holds it."""
    values = grid.to_numpy(float)
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            if np.isfinite(values[i, j]):
                v = values[i, j]
                text = (compact_number(float(f"{v:.2g}")) if paper and abs(v) >= 100
                        else fmt_number(v, digits) if not paper
                        else f"{v:.{0 if abs(v) >= 10 else 1}f}")
                ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white",
                        bbox={"boxstyle": "round,pad=0.1", "fc": "black", "alpha": 0.35, "lw": 0})


# ----------------------------------------------------------------------------- energy

CATEGORIES = ("ANN", "binary SNN", "multi-level SNN")
CATEGORY_COLORS = dict(zip(CATEGORIES, ("#7f7f7f", "#4c72b0", "#dd8452")))
TERM_COLORS = dict(zip(ALL_ENERGY_TERMS, ("#8c564b", "#1f77b4", "#ff7f0e", "#9467bd", "#2ca02c",
                                          "#bcbd22", "#d62728", "#17becf", "#e377c2")))


def energy_category(N: float) -> str:
    if N is None or math.isnan(N):  # no spike levels: an ANN
        return "ANN"
    return "binary SNN" if N == 1 else "multi-level SNN"


def categories_text(agg: pd.DataFrame) -> str:
    """'2 ANN, 1 binary SNN and 3 multi-level SNN groups': what an energy figure shows."""
    cats = [energy_category(n) for n in agg["N"].astype(float)]
    parts = [f"{cats.count(c)} {c}" for c in CATEGORIES if c in cats]
    if not parts:
        return "no group"
    text = ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + parts[-1]
    return text + " group" + ("s" if len(cats) != 1 else "")


def one_energy_setting(agg: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The groups of the most common energy settings, and a sentence naming those settings and
    any groups left out because their settings differ (their energies are not comparable)."""
    col = agg["energy_settings"] if "energy_settings" in agg.columns else None
    if col is None or col.dropna().empty:
        return agg, "Energy settings: not recorded in these runs."
    counts = col.value_counts(sort=False)
    chosen = counts.index[int(np.argmax(counts.to_numpy()))]
    keep = agg[(col == chosen) | col.isna()]
    text = f"Energy settings: {chosen}."
    left = agg[(col != chosen) & col.notna()]
    if len(left):
        text += (" Left out, as their energy settings differ: " + "; ".join(
            f"{lab} ({s})" for lab, s in zip(left["label"], left["energy_settings"])) + ".")
    return keep, text


@styled
def energy_figure(agg: pd.DataFrame) -> Figure:
    """One horizontal bar per group (ANN first, then binary SNNs (N=1), then multi-level SNNs):
    (a) total energy per test image (mean ± std over seeds; a log axis when the totals span more
    than WIDE_RANGE); (b) the group's energy split into its model's terms, as shares of its
    total, so a dominant term hides no other. The legend sits below the panels, never over a
    bar; labels on the y axis stay readable at a column's width."""
    energy = schema.ENERGY_UJ_PER_IMAGE
    d = agg[agg[f"{energy}_mean"].notna()].copy()
    if d.empty:
        raise SkipPlot(f"no energy estimate ({schema.SUMMARY_FILE} `{energy}`) in the "
                       "completed runs")
    d["category"] = [energy_category(n) for n in d["N"].astype(float)]
    d["rank"] = d["category"].map(CATEGORIES.index)
    d = d.sort_values("rank", kind="stable")
    size = size_now()
    # bars a readable pitch apart; a column stacks (a) over (b), each with its row labels
    pitch = 0.18 if size == "column" else 0.17
    ncol = {"column": 2, "page": 4}.get(size, 6)
    entries = d["category"].nunique() + sum(
        d[f"energy_{t}_uj_mean"].notna().any() for t in ALL_ENERGY_TERMS)
    fig, (ax, ax_share) = panel_figure(
        2, (11.0, 1.8 + 0.4 * len(d)), row_height=0.55 + pitch * len(d), paper_cols=2,
        column_cols=1, extra_height=0.6 + 0.13 * math.ceil(entries / ncol),
        sharey=size != "column")
    y = np.arange(len(d))
    totals = d[f"{energy}_mean"].to_numpy(float)
    std = d[f"{energy}_std"].fillna(0).to_numpy(float)
    bars = ax.barh(y, totals, xerr=std, capsize=2, height=0.7,
                   color=[CATEGORY_COLORS[c] for c in d["category"]])
    for patch, lab in zip(bars, d["label"]):
        patch.set_gid(f"total:{lab}")
    for yi, total, err in zip(y, totals, std):
        ax.annotate(fmt_number(total), (total + err, yi), xytext=(2, 0),
                    textcoords="offset points", ha="left", va="center", fontsize=8)
    if _wide(totals):
        ax.set_xscale("log")
        top = float(np.nanmax(totals + std))
        ax.set_xlim(right=top * 12)  # a decade past the longest bar: room for its value
    else:
        ax.margins(x=0.3)
    ax.set_xlabel("µJ per test image" + (" (log)" if ax.get_xscale() == "log" else ""))
    ax.set_title("(a) total")
    for a_ in (ax, ax_share):
        a_.set_yticks(y, list(d["label"]))
        a_.set_ylim(len(d) - 0.5, -0.5)  # first group on top
    terms = _energy_shares(ax_share, d, y)
    shown = [c for c in CATEGORIES if c in set(d["category"])]
    handles = [matplotlib.patches.Patch(color=CATEGORY_COLORS[c], label=f"(a) {c}")
               for c in shown]
    handles += [matplotlib.patches.Patch(color=TERM_COLORS[t],
                                         label=f"(b) {ENERGY_TITLES.get(t, t)}") for t in terms]
    legend_below(fig, handles=handles, ncol=ncol, fontsize=8)
    title(fig, "Energy per test image: " + " vs ".join(shown))
    return fig


def _wide(values: np.ndarray) -> bool:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    return bool(len(v) and v.max() / v.min() > WIDE_RANGE)


def _energy_shares(ax, d: pd.DataFrame, y: np.ndarray) -> list[str]:
    """Stacked horizontal shares (%) of the terms present; returns those terms."""
    terms = [t for t in ALL_ENERGY_TERMS if d[f"energy_{t}_uj_mean"].notna().any()]
    ax.set_title("(b) shares")
    if not terms:
        ax.text(0.5, 0.5, "no breakdown recorded", ha="center", va="center",
                transform=ax.transAxes)
        return terms
    parts = d[[f"energy_{t}_uj_mean" for t in terms]].fillna(0).to_numpy(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = 100.0 * parts / parts.sum(axis=1, keepdims=True)
    left = np.zeros(len(d))
    for j, term in enumerate(terms):
        w = np.nan_to_num(shares[:, j])
        bars = ax.barh(y, w, left=left, height=0.7, color=TERM_COLORS[term],
                       label=ENERGY_TITLES.get(term, term))
        for patch in bars:
            patch.set_gid(f"share:{term}")
        left += w
    ax.set_xlim(0, 100)
    ax.set_xlabel("% of the total")
    return terms


# ----------------------------------------------------------------------------- bars

@styled
def bars_figure(agg: pd.DataFrame, metrics: list[tuple[str, str]], heading: str,
                hlines: dict[str, tuple[float, str]] | None = None) -> Figure:
    """One panel per metric (column stem, y label with unit), one bar per group with the std
    over seeds as error bar; `hlines` maps a column stem to a reference line (value, label)."""
    d = agg[agg[[f"{c}_mean" for c, _ in metrics]].notna().any(axis=1)]
    if d.empty:
        raise SkipPlot("none of the completed runs has " + ", ".join(u for _, u in metrics))
    size = size_now()
    # a column stacks the panels over one set of group names (they take ~1 in rotated)
    fig, axes = panel_figure(len(metrics), (max(4.0, 0.8 * len(d) + 2) * len(metrics), 4.4),
                             row_height=1.4, paper_cols=3, column_cols=1,
                             column_row_height=min(1.4, 3.0 / len(metrics)), extra_height=1.5,
                             sharex=size == "column")
    color = colors(list(d["label"]))
    x = np.arange(len(d))
    for ax, (col, ylabel) in zip(axes, metrics):
        bars = ax.bar(x, d[f"{col}_mean"].fillna(0), yerr=d[f"{col}_std"].fillna(0), capsize=3,
                      color=[color[lab] for lab in d["label"]], width=0.7)
        for patch in bars:
            patch.set_gid(f"bars:{col}")
        if hlines and col in hlines:
            value, name = hlines[col]
            ax.axhline(value, ls="--", color="0.3", label=name)
        ax.set_xticks(x, list(d["label"]), rotation=30, ha="right",
                      fontsize=8 if size == "screen" else None)
        ax.set_ylabel(ylabel)
        if size == "column" and ax is not axes[-1]:
            ax.tick_params(labelbottom=False)
    if hlines:
        legend_below(fig, axes)
    title(fig, heading)
    return fig
