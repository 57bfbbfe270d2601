"""Group runs, aggregate over seeds, compare against a baseline row, write md / CSV / LaTeX.

Numbers stay numbers in the CSV (full precision); the markdown, LaTeX and HTML views show
"mean ± std" strings with the best mean of each metric column in bold where seeds separate it.
"""

from __future__ import annotations

import functools
import html
import math
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats

from bench import schema
from bench.errors import BenchError
from bench.models import ARCHITECTURES
from bench.neurons import ESTIMATORS
from bench.report.load import ALL_ENERGY_TERMS, SUM_PROBE, Records



@dataclass(frozen=True)
class Metric:
    column: str  # run-row column
    title: str  # table header, with unit
    best: str  # "max" or "min"


METRICS = (Metric("test_acc_pct", "accuracy (%)", "max"),
           Metric(schema.SPIKES_TOTAL_PER_IMAGE, "spikes / image", "min"),
           Metric(schema.ENERGY_UJ_PER_IMAGE, "energy (µJ / image)", "min"))
ENERGY_PARTS = tuple(f"energy_{t}_uj" for t in ALL_ENERGY_TERMS)
ENERGY_TITLES = {"arithmetic": "arithmetic (AC + MAC)", "ac": "AC", "mac": "MAC",
                 "addressing": "addressing", "weights": "weights", "bias": "bias",
                 "potentials": "potentials", "inputs": "inputs", "outputs": "outputs"}
# Descriptive settings carried onto every aggregated row (constant within a group unless swept).
DESCRIPTIVE = ("arch", "dataset", "T", "N", "barrier_estimator", "epochs", "energy_settings")


# ----------------------------------------------------------------------------- labels

def display_arch(arch: Any) -> str:
    """The architecture's registered label ('Sparse-ResNet18'), else its name."""
    return ARCHITECTURES.meta(str(arch), "label") or str(arch)


def has_barrier(arch: Any) -> bool:
    return bool(ARCHITECTURES.meta(str(arch), "barrier"))


def ann_of(arch: Any) -> str | None:
    """The registered ANN of the same architecture, if any."""
    return ARCHITECTURES.meta(str(arch), "ann")


def display_estimator(name: Any) -> str:
    cls = ESTIMATORS.get(str(name)) if str(name) in ESTIMATORS else None
    return getattr(cls, "label", "") or str(name)


def run_label(row: pd.Series | dict, keys: list[str], with_estimator: bool = False,
              full: bool = False) -> str:
    """'Sparse-ResNet18 + STE, N=4': architecture first, then the other grouping keys.

    Keys that mean nothing to the architecture are hidden unless `full`: the barrier
    estimator (named only for architectures with barrier neurons) and keys without a value
    (T and N of an ANN).
    """
    arch = row.get("arch")
    parts = [display_arch(arch)] if "arch" in row else []
    est = row.get("barrier_estimator")
    if has_barrier(arch) and est is not None and (with_estimator or "barrier_estimator" in keys):
        parts[-1] += f" + {display_estimator(est)}"
    hidden = {"arch"} if full else {"arch", "barrier_estimator"}
    if full and has_barrier(arch):
        hidden.add("barrier_estimator")  # already named after the architecture
    rest = [f"{k}={_fmt_key(row[k])}" if k != "energy_settings" else _energy_label(row[k])
            for k in keys if k not in hidden and not _missing(row.get(k))]
    return ", ".join(parts[:1] + rest) if parts else ", ".join(rest) or "all runs"


def _energy_label(settings: Any) -> str:
    """'energy: lemaire, event' from 'model lemaire, event counting, ...'."""
    if not isinstance(settings, str):
        return "energy: not recorded"
    model, _, rest = settings.removeprefix("model ").partition(", ")
    return f"energy: {model}, {rest.split(' counting')[0]}"


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _fmt_key(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def add_labels(frame: pd.DataFrame, keys: list[str], with_estimator: bool = False) -> pd.DataFrame:
    """A `label` column, one per group; groups whose short labels collide get full labels."""
    labels = frame.apply(lambda r: run_label(r, keys, with_estimator), axis=1)
    if len(frame) and labels.duplicated(keep=False).any():
        dup = labels.duplicated(keep=False)
        labels[dup] = frame[dup].apply(lambda r: run_label(r, keys, with_estimator, True), axis=1)
    return frame.assign(label=labels.astype(str) if len(frame) else pd.Series(dtype=str))


# ----------------------------------------------------------------------------- aggregation

def aggregate(runs: pd.DataFrame, keys: list[str], columns: list[str]) -> pd.DataFrame:
    """One row per group: keys, `runs` (count), <col>_mean, <col>_std (ddof 1: NaN for 1 run).

    Groups are sorted by their key values so every build orders rows the same way.
    """
    runs = runs.copy()
    for col in columns:
        if col not in runs.columns:
            runs[col] = np.nan
    grouped = runs.groupby(keys, dropna=False, sort=True)
    stats = grouped[columns].agg(["mean", "std"])
    stats.columns = [f"{c}_{s}" for c, s in stats.columns]
    stats.insert(0, "runs", grouped.size())
    extra = [c for c in DESCRIPTIVE if c in runs.columns and c not in keys]
    if extra:
        stats = stats.join(grouped[extra].first())
    return stats.reset_index()


def metric_columns() -> list[str]:
    """Run-row columns aggregated per group."""
    return [m.column for m in METRICS] + list(ENERGY_PARTS) + ["energy_total_uj"]


# ----------------------------------------------------------------------------- baseline

def coerce_baseline(baseline: dict[str, Any], records: Records, strict: bool) -> dict[str, Any]:
    """Baseline values in the config's types; `strict` (from --baseline) raises on unknown keys."""
    from bench.config import coerce, keys as config_keys

    out = {}
    for key, value in baseline.items():
        if key not in records.config_keys:
            if strict:
                raise BenchError(f"--baseline key '{key}' is not a config key of these runs; "
                                 f"known: {', '.join(sorted(records.config_keys))}")
            return {}
        try:
            out[key] = coerce(key, value)
        except BenchError:
            if strict and key in config_keys():
                raise  # names the key and why the value doesn't fit it
            out[key] = value  # a key unknown to this version of bench: compare as written
    return out


def baseline_mask(agg: pd.DataFrame, runs: pd.DataFrame, baseline: dict[str, Any]) -> pd.Series:
    """Rows of `agg` matching every baseline key (keys not grouped on are constant in `runs`)."""
    mask = pd.Series(True, index=agg.index)
    for key, value in baseline.items():
        if key in agg.columns:
            mask &= agg[key].map(lambda v: _same(v, value))
        else:  # not grouped on: one value across the runs
            mask &= len(runs) > 0 and _same(runs[key].iloc[0], value)
    return mask


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9)
    return str(a) == str(b)


def relative_change(agg: pd.DataFrame, keys: list[str], mask: pd.Series) -> pd.DataFrame:
    """Each row against the baseline row with the same values of the non-baseline keys.

    Adds `baseline` (its label), d_acc_pp (accuracy difference, percentage points) and
    d_spikes_pct / d_energy_pct (relative change, %). A row without such a baseline gets NaN.
    """
    base = agg[mask]
    varying = [k for k in keys if base[k].astype(str).nunique() > 1] if len(base) > 1 else []
    cols = ["label", "runs"] + [f"{m.column}_mean" for m in METRICS]
    right = base[varying + cols].rename(columns={c: f"{c}_base" for c in cols})
    merged = agg.merge(right, on=varying, how="left") if varying else agg.assign(
        **{c: right[c].iloc[0] for c in right.columns})
    out = agg.copy()
    out["baseline"] = merged["label_base"].values
    out["baseline_runs"] = merged["runs_base"].values
    acc, spikes, energy = (m.column for m in METRICS)
    out["d_acc_pp"] = merged[f"{acc}_mean"].values - merged[f"{acc}_mean_base"].values
    for name, col in (("d_spikes_pct", spikes), ("d_energy_pct", energy)):
        b = merged[f"{col}_mean_base"].values.astype(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[name] = 100.0 * (merged[f"{col}_mean"].values - b) / b
    out["is_baseline"] = mask.values
    return out


def change_sentences(changed: pd.DataFrame) -> list[str]:
    """'Sparse-ResNet18: activity -47 %, energy -27 %, accuracy -0.30 pp vs SEW-ResNet18
    (3 vs 3 runs).' for every row with a baseline, except the baseline itself."""
    out = []
    for _, r in changed[~changed["is_baseline"] & changed["baseline"].notna()].iterrows():
        parts = [f"{word} {_fmt_signed(r[col], unit)}" for word, col, unit in
                 (("activity", "d_spikes_pct", " %"), ("energy", "d_energy_pct", " %"),
                  ("accuracy", "d_acc_pp", " pp")) if pd.notna(r[col])]
        if parts:
            out.append(f"{r['label']}: {', '.join(parts)} vs {r['baseline']} "
                       f"({int(r['runs'])} vs {int(r['baseline_runs'])} runs).")
    return out


def _fmt_signed(x: float, unit: str) -> str:
    digits = 2 if unit.strip() == "pp" else 0
    return f"0{unit}" if round(x, digits) == 0 else f"{x:+.{digits}f}{unit}"


# ----------------------------------------------------------------------------- formatting

def decimals(x: float) -> int:
    """Digits after the point for a value of this size: 67,848 / 93.13 / 0.0421."""
    if not np.isfinite(x) or abs(x) >= 100:
        return 0
    if abs(x) >= 1 or x == 0:
        return 2
    return 2 - math.floor(math.log10(abs(x)))


def fmt_number(x: float, digits: int | None = None) -> str:
    """Readable at every scale (thousands separated); NaN -> 'n/a'."""
    if x is None or not np.isfinite(x):
        return "n/a"
    return f"{x:,.{decimals(x) if digits is None else digits}f}"


def fmt_mean_std(mean: float, std: float) -> str:
    """'1,100 ± 100', '92.00 ± 2.00': the std at the mean's precision."""
    if not np.isfinite(mean):
        return "n/a"
    digits = decimals(mean)
    if not np.isfinite(std):
        return fmt_number(mean, digits)
    return f"{fmt_number(mean, digits)} ± {fmt_number(std, digits)}"


def best_mask(agg: pd.DataFrame, column: str, best: str) -> pd.Series:
    """True on the row with the column's best mean, only when its 95 % interval separates it
    from the runner-up (Welch's t on the two groups' mean, std and runs: p < 0.05 two-sided,
    scipy.stats.ttest_ind_from_stats); a tie, a group with one run, or overlapping groups: no
    bold (a best that seed noise could reverse is not a best)."""
    none = pd.Series(False, index=agg.index)
    means = agg[f"{column}_mean"].astype(float)
    finite = means[np.isfinite(means)]
    if len(finite) < 2:
        return none
    order = finite.sort_values(ascending=best == "min", kind="stable").index
    first, second = agg.loc[order[0]], agg.loc[order[1]]
    if not _separated(first, second, column):
        return none
    return pd.Series(agg.index == order[0], index=agg.index)


def _separated(a: pd.Series, b: pd.Series, column: str) -> bool:
    ma, mb = float(a[f"{column}_mean"]), float(b[f"{column}_mean"])
    sa, sb = float(a[f"{column}_std"]), float(b[f"{column}_std"])
    na, nb = int(a["runs"]), int(b["runs"])
    if ma == mb or na < 2 or nb < 2 or not (np.isfinite(sa) and np.isfinite(sb)):
        return False
    if sa == 0 and sb == 0:  # no spread at all: different means are different
        return True
    p = scipy.stats.ttest_ind_from_stats(ma, sa, na, mb, sb, nb, equal_var=False).pvalue
    return bool(p < 0.05)


# Characters LaTeX's default UTF-8 input can't typeset in text mode (µ it can).
LATEX_UNICODE = {"Δ": r"$\Delta$", "−": r"$-$", "±": r"$\pm$", "×": r"$\times$"}
LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                 "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                 "^": r"\textasciicircum{}"}
# The paper LaTeX views are laid out for: a 10 pt two-column article (IEEE, ACM, NeurIPS-style
# two-column classes are within a few points): \columnwidth 229.5 pt, \textwidth 469 pt.
LATEX_WIDTHS_PT = {"column": 229.5, "page": 469.0}
LATEX_MACRO = {"column": r"\columnwidth", "page": r"\textwidth"}
TABCOLSEP_PT = 4.0  # tighter than LaTeX's 6 pt: one more column fits a column's width
TEXT_LINE = 26  # characters of a text cell per line before it wraps


def latex_escape(text: str) -> str:
    out = "".join(LATEX_SPECIAL.get(ch, ch) for ch in str(text))
    out = re.sub(r"^-(?=[\d.])", "−", out)  # a leading hyphen of a number is a minus sign
    for char, command in LATEX_UNICODE.items():
        out = out.replace(char, command)
    return out


@functools.lru_cache(maxsize=1)
def _cmr10():
    """Computer Modern Roman 10 pt, LaTeX's default body font, as matplotlib ships it."""
    from matplotlib import get_data_path
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextToPath

    font = FontProperties(fname=str(Path(get_data_path()) / "fonts" / "ttf" / "cmr10.ttf"),
                          size=10)
    return TextToPath(), font


@functools.lru_cache(maxsize=4096)
def text_width_pt(text: str, bold: bool = False) -> float:
    """Width of `text` typeset by LaTeX at 10 pt, from matplotlib's copy of cmr10 (bold
    extended digits are 15 % wider; a minus sign is as wide as a plus): lets a table be split
    before LaTeX sees it; the compile test measures the real width."""
    paths, font = _cmr10()
    # cmr10 lacks these glyphs: stand-ins of the same width, so matplotlib warns of nothing
    text = (re.sub(r"^-", "+", str(text)).replace("Δ", "D").replace("±", "+").replace("µ", "u")
            .replace("−", "+").replace("–", "-").replace("×", "+"))
    width = paths.get_text_width_height_descent(text, font, ismath=False)[0] if text else 0.0
    return width * (1.15 if bold else 1.0)


def fmt_compact(mean: float, std: float) -> str:
    """Mean with its std in the units of the last digit, std to two significant digits:
    92.0(20) is 92.0 ± 2.0, 1100(100) is 1100 ± 100; a single run (NaN std) is the mean only."""
    if mean is None or not np.isfinite(mean):
        return "n/a"
    if std is None or not np.isfinite(std):
        return f"{mean:.{decimals(mean)}f}"
    if std == 0:
        return f"{mean:.{decimals(mean)}f}(0)"
    digits = max(0, 1 - math.floor(math.log10(abs(std))))
    return f"{mean:.{digits}f}({round(abs(std) * 10 ** digits)})"


def _lines(text: str, split: float | None = None) -> list[str]:
    """A cell's lines: a label wider than `split` pt breaks after its commas and before ' + ';
    long text wraps at TEXT_LINE characters."""
    text = str(text)
    if split and text_width_pt(text) > split:
        parts = re.split(r"(?<=,) | (?=\+ )", text)
        lines: list[str] = []
        for part in parts:
            if lines and text_width_pt(lines[-1] + " " + part) <= split:
                lines[-1] += " " + part
            else:
                lines.append(part)
        return lines
    if len(text) > TEXT_LINE:
        return textwrap.wrap(text, TEXT_LINE) or [text]
    return [text]


def _cell(lines: list[str] | tuple[str, ...], align: str, bold: bool = False) -> str:
    body = [latex_escape(line) for line in lines]
    if bold:
        body = [f"\\textbf{{{b}}}" for b in body]
    if len(body) == 1:
        return body[0]
    return f"\\begin{{tabular}}[c]{{@{{}}{align}@{{}}}}" + r" \\ ".join(body) + r"\end{tabular}"


def _width(lines, bold: bool = False) -> float:
    return max((text_width_pt(line, bold) for line in lines), default=0.0) + 2 * TABCOLSEP_PT


def _chunks(stub: float, widths: list[float], target: float) -> list[list[int]]:
    """Consecutive data columns in groups that fit `target` beside the stub column (each group
    a tabular of its own, the stub repeated); a column wider than that alone is alone."""
    out: list[list[int]] = []
    used = stub
    for i, w in enumerate(widths):
        if out and used + w <= target:
            out[-1].append(i)
            used += w
        else:
            out.append([i])
            used = stub + w
    return out


def _tabular(heads: list[list[str]], rows: list[list[list[str]]], bold: list[list[bool]],
             align: str) -> str:
    """A booktabs tabular; heads: lines per column, rows: lines per cell."""
    out = [f"\\begin{{tabular}}{{{align}}}", r"\toprule"]
    out.append(" & ".join(_cell(h, a) for h, a in zip(heads, align)) + r" \\")
    out.append(r"\midrule")
    for cells, marks in zip(rows, bold):
        out.append(" & ".join(_cell(c, a, b) for c, a, b in zip(cells, align, marks)) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(out)


@dataclass
class Table:
    """A table in three views: numbers (CSV), display strings (md/HTML), bold cells, and its
    LaTeX (`tex` cells, `heads` header lines) laid out for a paper's column and page widths.

    The first display column names the rows (display names; ids only in the CSV). `transpose`:
    in LaTeX the data columns become rows and the row names columns (the sums along depth, the
    energy terms), so a table of many such columns and few groups fits a column.
    """

    name: str
    numeric: pd.DataFrame
    display: pd.DataFrame
    bold: pd.DataFrame  # same shape as display, True = bold
    sentence: str
    formats: tuple[str, ...] = ("md", "csv", "tex")  # + "wide.tex": name-wide.tex
    note: str = ""  # shown under the table (e.g. the energy settings)
    tex: pd.DataFrame | None = None  # LaTeX cells (compact uncertainties); default: display
    heads: dict[str, tuple[str, ...]] | None = None  # LaTeX header lines per display column
    transpose: bool = False
    corner: str = ""  # the LaTeX stub column's header when transposed

    def markdown(self) -> str:
        cells = self.display.mask(self.bold, "**" + self.display + "**")
        return cells.to_markdown(index=False, disable_numparse=True)

    def latex(self, size: str = "column") -> str:
        """Booktabs tabulars at the document's font size for a \\columnwidth (size 'column',
        inside `table`) or a \\textwidth (size 'page', inside `table*`): columns that would not
        fit are split into further tabulars below the first (the row names repeated), so the
        \\resizebox, kept as a guard, has nothing or little to shrink."""
        heads, rows, bold, align = self._grid()
        stub = max(_width(h) for h in [heads[0]] + [r[0] for r in rows])
        widths = [max([_width(heads[j])] + [_width(r[j], b[j]) for r, b in zip(rows, bold)])
                  for j in range(1, len(heads))]
        macro = LATEX_MACRO[size]
        blocks = []
        for chunk in _chunks(stub, widths, LATEX_WIDTHS_PT[size]) if widths else [[]]:
            cols = [0] + [j + 1 for j in chunk]
            tab = _tabular([heads[j] for j in cols], [[r[j] for j in cols] for r in rows],
                           [[b[j] for j in cols] for b in bold], "".join(align[j] for j in cols))
            blocks.append(f"\\resizebox{{\\ifdim\\width>{macro}{macro}\\else\\width\\fi}}{{!}}"
                          f"{{%\n{tab}}}")
        env, other = ("table", f"{self.name}-wide.tex") if size == "column" else (
            "table*", f"{self.name}.tex")
        other = other if "wide.tex" in self.formats else ""
        comments = [self.sentence, self.note,
                    f"Inside \\begin{{{env}}} ({macro} wide); needs \\usepackage{{booktabs,"
                    f"graphicx}}" + (f"; the other width: {other}." if other else ".")]
        note = "".join(f"% {line}\n" for line in comments if line)
        body = "%\n\\par\\medskip\n".join(blocks)
        return f"{note}{{\\setlength{{\\tabcolsep}}{{{TABCOLSEP_PT:g}pt}}%\n{body}%\n}}\n"

    def _grid(self) -> tuple[list, list, list, list[str]]:
        """Header lines, cell lines and bold marks of the LaTeX view (transposed if asked)."""
        cells = (self.tex if self.tex is not None else self.display).astype(str)
        heads = self.heads or {}
        cols = list(cells.columns)
        head = [list(heads.get(c, (c,))) for c in cols]
        bold = self.bold[cols].to_numpy(bool)
        # row names break at 80 pt, or at 50 pt where they head the columns (transposed)
        split = 50.0 if self.transpose else 80.0
        data = [[_lines(v, split if j == 0 else None) for j, v in enumerate(row)]
                for row in cells.to_numpy()]
        align = ["l"] + ["r" if _numeric_column(self.display[c]) else "l" for c in cols[1:]]
        if not self.transpose:
            return head, data, bold.tolist(), align
        t_head = [[self.corner or cols[0]]] + [row[0] for row in data]
        t_rows = [[head[j]] + [row[j] for row in data] for j in range(1, len(cols))]
        t_bold = [[False] + [bool(bold[i][j]) for i in range(len(data))]
                  for j in range(1, len(cols))]
        return t_head, t_rows, t_bold, ["l"] + ["r"] * len(data)

    def html(self) -> str:
        cells = self.display.map(html.escape)
        cells = cells.mask(self.bold, "<b>" + cells + "</b>")
        cells.columns = [html.escape(str(c)) for c in cells.columns]
        return cells.to_html(index=False, escape=False, border=0, na_rep="n/a")

    def write(self, folder: Path) -> list[Path]:
        """name.md, name.csv, name.tex (a column wide), name-wide.tex (`wide.tex`: a page)."""
        folder.mkdir(parents=True, exist_ok=True)
        writers = {"md": lambda: self.markdown() + (f"\n\n{self.note}" if self.note else "")
                   + "\n", "tex": self.latex, "wide.tex": lambda: self.latex("page"),
                   "csv": lambda: self.numeric.to_csv(index=False, lineterminator="\n")}
        paths = []
        for ext in self.formats:
            path = folder / (f"{self.name}-{ext}" if ext == "wide.tex" else f"{self.name}.{ext}")
            path.write_text(writers[ext](), encoding="utf-8")
            paths.append(path)
        return paths


GROUP_HEADING = "group"  # the rows' name column of a paper table (not grads.csv's group)
PAPER_FORMATS = ("md", "csv", "tex", "wide.tex")  # the report's tables: both LaTeX widths
NUMERIC_CELL = re.compile(r"^(n/a|[+\-−]?[\d,]*\.?\d+( ± [\d,]*\.?\d+)?( ?(%|pp|x))?)?$")


def _numeric_column(cells: pd.Series) -> bool:
    return all(NUMERIC_CELL.match(str(c).strip()) for c in cells)


def _group_display(agg: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The rows' one name: the group's display label (ids stay in the CSV)."""
    labels = agg["label"] if "label" in agg.columns else add_labels(agg, keys)["label"]
    return pd.DataFrame({GROUP_HEADING: labels.astype(str)}, index=agg.index)


METRIC_HEADS = {"test_acc_pct": ("accuracy", "(%)"),
                schema.SPIKES_TOTAL_PER_IMAGE: ("spikes", "/ image"),
                schema.ENERGY_UJ_PER_IMAGE: ("energy", "(µJ)")}
CHANGE_COLUMNS = (("d_acc_pp", "Δ accuracy (pp)", ("Δ acc.", "(pp)")),
                  ("d_spikes_pct", "Δ spikes (%)", ("Δ spikes", "(%)")),
                  ("d_energy_pct", "Δ energy (%)", ("Δ energy", "(%)")))


def _per_group(agg: pd.DataFrame) -> str:
    runs = agg["runs"].astype(int).unique()
    return f" ({runs[0]} per group)" if len(runs) == 1 else ""


def summary_table(agg: pd.DataFrame, keys: list[str], n_runs: int,
                  changed: pd.DataFrame | None = None) -> Table:
    """Accuracy, spikes and energy per group (mean ± std over seeds), optional Δ vs baseline."""
    display = _group_display(agg, keys)
    display["runs"] = agg["runs"].astype(int).astype(str)
    # one run count for every group: said in the caption, not a LaTeX column
    tex = display.copy() if agg["runs"].nunique() > 1 else display.drop(columns="runs")
    heads = {GROUP_HEADING: (GROUP_HEADING,), "runs": ("runs",)}
    bold = pd.DataFrame(False, index=agg.index, columns=display.columns)
    numeric = agg[keys + ["runs"]].copy()
    for m in METRICS:
        mean, std = agg[f"{m.column}_mean"], agg[f"{m.column}_std"]
        display[m.title] = [fmt_mean_std(a, b) for a, b in zip(mean, std)]
        tex[m.title] = [fmt_compact(a, b) for a, b in zip(mean, std)]
        heads[m.title] = METRIC_HEADS.get(m.column, (m.title,))
        bold[m.title] = best_mask(agg, m.column, m.best)
        numeric[f"{m.column}_mean"], numeric[f"{m.column}_std"] = mean, std
    base_note = ""
    if changed is not None:
        for col, title, head in CHANGE_COLUMNS:
            digits = 2 if col == "d_acc_pp" else 1
            display[title] = [f"{v:+.{digits}f}" if np.isfinite(v) else "n/a"
                              for v in changed[col].astype(float)]
            tex[title], heads[title], bold[title] = display[title], head, False
            numeric[col] = changed[col]
        display["baseline"] = changed["baseline"].fillna("n/a").astype(str)
        bold["baseline"] = False
        numeric["baseline"] = changed["baseline"]
        bases = changed["baseline"].dropna().unique()
        if len(bases) == 1:  # named once in the caption, not in every LaTeX row
            base_note = f" against {bases[0]}"
        else:
            tex["baseline"] = display["baseline"]
    groups = len(agg)
    sentence = (f"Test accuracy, total spikes per test image and energy per image of "
                f"{groups} group{'s' if groups != 1 else ''} ({', '.join(keys)}), "
                f"mean ± std over seeds (LaTeX: 92.0(20) is 92.0 ± 2.0), from {n_runs} completed "
                f"run{'s' if n_runs != 1 else ''}{_per_group(agg)}; the best mean of a column in bold where its 95 % "
                f"interval (Welch) separates it from the runner-up"
                + (f"; Δ columns are relative to the baseline row{base_note}."
                   if changed is not None else "."))
    return Table("summary", numeric.reset_index(drop=True), display.reset_index(drop=True),
                 bold.reset_index(drop=True), sentence, tex=tex.reset_index(drop=True),
                 heads=heads, formats=PAPER_FORMATS)


def sums_table(layers: pd.DataFrame, runs: pd.DataFrame, keys: list[str]) -> Table | None:
    """Spikes per image at each residual sum (sum0..sumK) per group, mean ± std over seeds;
    in LaTeX one row per sum (depth reads down), one column per group."""
    sums = sum_rows(layers, runs)
    if sums.empty:
        return None
    wide = sums.pivot_table(index="uid", columns="k", values=schema.SPIKES_PER_IMAGE,
                            aggfunc="first")
    names = [f"sum{k}" for k in wide.columns]
    wide.columns = names
    merged = runs.set_index("uid")[keys].join(wide, how="inner").reset_index()
    agg = aggregate(merged, keys, names)
    if "label" in runs.columns:
        agg = agg.merge(runs[keys + ["label"]].drop_duplicates(keys), on=keys, how="left")
    display = _group_display(agg, keys)
    display["runs"] = agg["runs"].astype(str)
    tex = display.copy()
    bold = pd.DataFrame(False, index=agg.index, columns=display.columns)
    numeric = agg[keys + ["runs"]].copy()
    for n in names:
        display[n] = [fmt_mean_std(a, b) for a, b in zip(agg[f"{n}_mean"], agg[f"{n}_std"])]
        tex[n] = [fmt_compact(a, b) for a, b in zip(agg[f"{n}_mean"], agg[f"{n}_std"])]
        bold[n] = best_mask(agg, n, "min")
        numeric[f"{n}_mean"], numeric[f"{n}_std"] = agg[f"{n}_mean"], agg[f"{n}_std"]
    sentence = (f"Spikes per test image leaving each residual block (sum0..sum{len(names) - 1}) "
                f"per group, mean ± std over seeds, from {merged['uid'].nunique()} completed "
                f"runs with residual probes; fewest in bold where its 95 % interval (Welch) "
                f"separates it from the runner-up.")
    return Table("sums", numeric, display, bold, sentence, tex=tex, transpose=True,
                 corner="sum", formats=PAPER_FORMATS)


def sum_rows(layers: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Layer rows of the residual-sum probes of the given runs, with `k` (block order)."""
    if layers.empty:
        return layers.assign(k=pd.Series(dtype=int))
    is_sum = layers[schema.PROBE].astype(str).str.match(SUM_PROBE)
    rows = layers[layers["uid"].isin(runs["uid"]) & is_sum]
    return rows.assign(k=rows[schema.PROBE].str.extract(SUM_PROBE, expand=False).astype(int))


def energy_settings_note(agg: pd.DataFrame, what: str = "rows") -> tuple[str, bool]:
    """('Energy settings: ...', mixed?) for the groups of a table or figure."""
    col = agg["energy_settings"] if "energy_settings" in agg.columns else pd.Series(dtype=object)
    found = [s for s in col.dropna().unique()]
    if not found:
        return "Energy settings: not recorded in these runs.", False
    if len(found) == 1:
        return f"Energy settings: {found[0]}.", False
    parts = []
    for i, value in enumerate(found):
        labels = list(agg.loc[col == value, "label"]) if "label" in agg.columns else []
        parts.append(f"[{chr(65 + i)}] {value}" + (f" ({', '.join(labels)})" if labels else ""))
    return (f"Energy settings differ between {what}, which are therefore not comparable "
            f"with each other: " + "; ".join(parts) + "."), True


def energy_table(agg: pd.DataFrame, keys: list[str], n_runs: int) -> Table | None:
    """Energy per image split into the terms of the runs' energy model (means over seeds),
    with the energy settings named under it (a column of its own when rows differ)."""
    cols = [c for c in ENERGY_PARTS if agg[f"{c}_mean"].notna().any()] + ["energy_total_uj"]
    if agg[[f"{c}_mean" for c in cols]].isna().all().all():
        return None
    display = _group_display(agg, keys)
    display["runs"] = agg["runs"].astype(str)
    heads = {"runs": ("runs",)}
    bold = pd.DataFrame(False, index=agg.index, columns=display.columns)
    numeric = agg[keys + ["runs"]].copy()
    note, mixed = energy_settings_note(agg)
    if mixed:
        found = list(agg["energy_settings"].dropna().unique())
        display["energy settings"] = agg["energy_settings"].map(
            lambda v: f"[{chr(65 + found.index(v))}]" if v in found else "n/a")
        bold["energy settings"] = False
    for c in cols:
        term = c[len("energy_"):-len("_uj")]
        title = f"{ENERGY_TITLES.get(term, term)} (µJ)"
        display[title] = agg[f"{c}_mean"].map(fmt_number)
        heads[title] = (ENERGY_TITLES.get(term, term),)
        bold[title] = best_mask(agg, c, "min") if c == "energy_total_uj" else False
        numeric[f"{c}_mean"] = agg[f"{c}_mean"]
    if "energy_settings" in agg.columns:
        numeric["energy_settings"] = agg["energy_settings"]
    sentence = (f"Energy per test image split into the terms of the energy model (arithmetic, "
                f"addressing and memory accesses; a term the model lacks is n/a), mean over "
                f"seeds, {len(agg)} groups from {n_runs} completed runs; lowest total in bold where its 95 % interval "
                f"(Welch) separates it from the runner-up.")
    return Table("energy", numeric, display, bold, sentence, note=note, heads=heads,
                 transpose=True, corner="µJ / image", formats=PAPER_FORMATS)
