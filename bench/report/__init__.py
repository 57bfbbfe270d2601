"""`bench report`: run records of one or several studies -> tables, figures, index.md/html.

    build_report(["results/avalanche"], "reports/avalanche") -> [every file written]

Reads only the saved run records (README "The run record"); uses completed runs, counts the
others. Output: tables/*.{md,csv,tex}, figures/<name>.png (screen), <name>.pdf (7.16 in) and
<name>-1col.pdf (3.5 in), index.md, index.html (a header first: see bench.report.header).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench import schema
from bench.errors import BenchError
from bench.report import plots, tradeoff
from bench.report.header import header_lines
from bench.report.index import Page
from bench.report.load import (Records, group_keys, load_records, parse_baseline,
                               sweep_baseline)
from bench.report.tables import (add_labels, aggregate, baseline_mask, change_sentences,
                                 coerce_baseline, energy_settings_note, energy_table,
                                 metric_columns, relative_change,
                                 summary_table, sums_table)
from bench.report.plots import one_energy_setting

__all__ = ["main_report", "build_report", "prepare", "Prepared"]


LEVELS_FIGURE = "levels"  # the T x N figure's file name, not layers.csv's column


@dataclass
class Prepared:
    """Completed runs and their groups, labelled the same way in every table and figure.

    keys: the grouping keys; agg: one row per group (aggregate() columns + `label`), sorted;
    done: the completed runs with their group's `label`.
    """

    records: Records
    keys: list[str]
    agg: pd.DataFrame
    done: pd.DataFrame


def prepare(records: Records, keys: list[str] | None = None) -> Prepared:
    keys = group_keys(records) if keys is None else keys
    done = _completed(records)
    if done.empty:
        return Prepared(records, keys, pd.DataFrame(columns=keys + ["label"]), done)
    agg = add_labels(aggregate(done, keys, metric_columns()), keys)
    done = done.merge(agg[keys + ["label"]], on=keys, how="left")
    return Prepared(records, keys, agg, done)


def main_report(results_dirs: list[str], out: str | None = None,
                baseline: str | None = None) -> int:
    files = build_report(results_dirs, out, baseline)
    index = next(f for f in files if f.name == "index.md")
    print(f"report: {len(files)} files in {index.parent} (open {index} or "
          f"{index.with_suffix('.html')})")
    return 0


def default_out(studies: list[str]) -> Path:
    """reports/<study>[+<study>...]: always one folder inside reports/."""
    name = "+".join(s.replace("/", "-") for s in studies)
    if name.strip(".") == "":
        raise BenchError(f"no report folder name in the study names {studies}; give --out")
    return Path("reports") / name


def build_report(results_dirs: list[str | Path], out: str | Path | None = None,
                 baseline: str | None = None, paper: bool = True) -> list[Path]:
    """Write the report of the studies' run records into `out`; return every file written.
    `paper=False` leaves out the paper-size PDFs (screen PNGs only: a quicker look)."""
    records = load_records(results_dirs)
    out = Path(out) if out is not None else default_out(records.studies)
    prep = prepare(records)
    keys, agg, done = prep.keys, prep.agg, prep.done
    if done.empty and baseline:
        raise BenchError(f"--baseline {baseline} matches no row: no completed run")
    # the baseline is checked before anything is written: a bad --baseline leaves no files
    base_page = Page("")
    changed = None if done.empty else _baseline(records, agg, done, keys, baseline, base_page)
    page = Page(f"bench report: {' + '.join(records.studies)}")
    page.bullets(header_lines(records, done, keys))
    out.mkdir(parents=True, exist_ok=True)
    files = _write_runs(records, keys, out, page)
    if done.empty:
        page.text("No completed run: no table or figure can be made.")
        return files + page.write(out)
    page.blocks += base_page.blocks
    files += _tables(records, agg, done, keys, changed, out, page)
    files += _figures(records, agg, done, keys, out, page, paper)
    return files + page.write(out)


def _completed(records: Records) -> pd.DataFrame:
    done = records.completed.copy()
    for col in ("arch", "T", "N", "barrier_estimator", "dataset"):
        if col not in done.columns:
            done[col] = np.nan
    return done.reset_index(drop=True)


def _write_runs(records: Records, keys: list[str], out: Path, page: Page) -> list[Path]:
    """Every record (any status) as one CSV row, and the counts on the page."""
    # the counts and the grouping keys are in the header: said once
    page.text("Each row of a table aggregates its seeds (mean, std with ddof 1, count).")
    bad = records.runs[records.runs[schema.STATUS] != schema.COMPLETED]
    page.bullets([f"{r.uid} ({r.status}): {r.error}" if isinstance(r.error, str) and r.error
                  else f"{r.uid} ({r.status})" for r in bad.itertuples()])
    cols = ["uid", schema.STUDY, schema.RUN_ID, schema.STATUS, schema.ERROR] + [
        k for k in dict.fromkeys(keys + ["seed"]) if k in records.runs.columns] + [
        c for c in schema.SUMMARY_SCALARS if c in records.runs.columns]
    path = out / "tables" / "runs.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    records.runs[cols].sort_values("uid").to_csv(path, index=False, lineterminator="\n")
    page.file("Every run record, one row each, with its status and error.", path, out)
    return [path]


def _baseline(records: Records, agg: pd.DataFrame, done: pd.DataFrame, keys: list[str],
              text: str | None, page: Page) -> pd.DataFrame | None:
    """Rows' change vs the baseline row (--baseline, else the sweep file's `baseline:`)."""
    wanted: dict[str, Any] = parse_baseline(text) if text else sweep_baseline(records)
    if not wanted:
        page.text("No baseline (none in sweep.yaml, no --baseline): no relative change.")
        return None
    where = "--baseline" if text else "sweep.yaml baseline"
    spec = ",".join(f"{k}={v}" for k, v in wanted.items())
    base = coerce_baseline(wanted, records, strict=bool(text))
    mask = baseline_mask(agg, done, base) if base else pd.Series(False, index=agg.index)
    if not mask.any():
        if text:
            raise BenchError(f"--baseline {spec} matches no row; {_values(agg, done, wanted)}")
        page.text(f"The {where} {spec} matches no completed run: no relative change.")
        return None
    changed = relative_change(agg, keys, mask)
    page.heading("Change against the baseline")
    page.text(f"Baseline ({where}): {spec}. Activity and energy as relative change, accuracy "
              "as a difference in percentage points, each row against the baseline row with "
              "the same values of the other keys.")
    page.bullets(change_sentences(changed))
    return changed


def _values(agg: pd.DataFrame, done: pd.DataFrame, wanted: dict[str, Any]) -> str:
    parts = []
    for key in wanted:
        col = agg[key] if key in agg.columns else done[key]
        parts.append(f"values of {key}: {', '.join(sorted(map(str, col.unique())))}")
    return "; ".join(parts)


def _tables(records: Records, agg: pd.DataFrame, done: pd.DataFrame, keys: list[str],
            changed: pd.DataFrame | None, out: Path, page: Page) -> list[Path]:
    page.heading("Tables")
    files: list[Path] = []
    summary = summary_table(agg, keys, len(done), changed)
    summary.note = energy_settings_note(agg)[0]  # it has an energy column
    tables = [summary, sums_table(records.layers, done, keys),
              energy_table(agg, keys, len(done))]
    for table in tables:
        if table is not None:
            written = table.write(out / "tables")
            page.table(table, written, out)
            files += written
    probes = _probe_table(records, done, keys)
    if not probes.empty:
        path = out / "tables" / "probes.csv"
        probes.to_csv(path, index=False, lineterminator="\n")
        page.file(f"Per-probe spike statistics on the test split (every neuron and residual sum), "
                  f"mean over seeds per group, from {probes['runs'].max()} runs per group at "
                  f"most.", path, out)
        files.append(path)
    return files


def _probe_table(records: Records, done: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The long table: one row per (group, probe), mean over seeds, in depth order."""
    layers = records.layers.merge(done[["uid", "label"] + keys], on="uid")
    if layers.empty:
        return layers
    g = layers.groupby(["label"] + keys + [schema.PROBE], dropna=False, sort=False)
    out = g.agg(**{schema.KIND: (schema.KIND, "first"), schema.INDEX: (schema.INDEX, "first"),
                   schema.LEVELS: (schema.LEVELS, "first"),
                   schema.NEURONS: (schema.NEURONS, "first"), "runs": ("uid", "nunique"),
                   f"{schema.SPIKES_PER_IMAGE}_mean": (schema.SPIKES_PER_IMAGE, "mean"),
                   f"{schema.SPIKES_PER_IMAGE}_std": (schema.SPIKES_PER_IMAGE, "std"),
                   f"{schema.NONZERO_PER_IMAGE}_mean": (schema.NONZERO_PER_IMAGE, "mean"),
                   f"{schema.RATE}_mean": (schema.RATE, "mean"),
                   schema.MAX_SPIKE: (schema.MAX_SPIKE, "max")})
    return out.reset_index().sort_values(keys + [schema.INDEX, schema.PROBE], kind="stable")


def _figures(records: Records, agg: pd.DataFrame, done: pd.DataFrame, keys: list[str],
             out: Path, page: Page, paper: bool = True) -> list[Path]:
    page.heading("Figures")
    order = list(agg["label"])
    grad_agg = add_labels(agg.drop(columns="label"), keys, with_estimator=True)
    grad_runs = done.drop(columns="label").merge(grad_agg[keys + ["label"]], on=keys, how="left")
    n_sum = records.layers[records.layers["uid"].isin(done["uid"])]["uid"].nunique()
    n_grad = records.grads[records.grads["uid"].isin(done["uid"])]["uid"].nunique()
    facets = [k for k in keys if k not in ("T", "N")]
    energy_rows, energy_note = one_energy_setting(agg)
    specs = [
        ("avalanche", lambda: plots.avalanche_figure(done, records.layers, order),
         f"Spikes per test image at each residual sum along depth, one series per group, mean ± "
         f"std over seeds: (a) with the bound N·T·neurons a multi-level neuron per element "
         f"could emit, (b) per neuron and timestep vs N, (c) the largest single spike count vs "
         f"N; from {n_sum} completed runs with probe statistics."),
        ("gradient",
         lambda: plots.gradient_figure(grad_runs, records.grads, list(grad_agg["label"])),
         f"Per-block gradient L2 norm over training for each variant (architecture + barrier "
         f"estimator), mean over seeds, and each block's mean over training; from {n_grad} "
         f"completed runs with grads.csv."),
        (LEVELS_FIGURE, lambda: plots.levels_figure(agg, facets),
         f"Accuracy and energy per image over the T x N grid"
         f"{' per ' + ', '.join(facets) if facets else ''}, mean over seeds, from {len(done)} "
         f"completed runs. {energy_settings_note(agg)[0]}"),
        ("energy", lambda: plots.energy_figure(energy_rows),
         f"Energy per test image: (a) total, (b) the energy model's terms as shares of the "
         f"total; {plots.categories_text(energy_rows)}; mean over seeds. {energy_note}"),
        ("tradeoff", lambda: tradeoff.tradeoff_figure(agg), tradeoff.caption(agg, len(done))),
    ]
    return render_figures(specs, out, page, paper)


def render_figures(specs, out: Path, page: Page, paper: bool = True) -> list[Path]:
    """Build, save and list each figure (a screen PNG, and PDFs one page and one column wide
    for a paper); a SkipPlot becomes a sentence saying why."""
    files: list[Path] = []
    for name, build, sentence in specs:
        try:
            fig = build()
        except plots.SkipPlot as skip:
            page.text(f"The {name} plot is skipped: {skip}.")
            continue
        stem = out / "figures" / name
        written = plots.save_figure(fig, stem)
        for size in ("page", "column") if paper else ():
            with plots.paper_size(size):
                written.append(plots.save_paper_figure(build(), stem, size))
        page.figure(name, written, sentence, out)
        files += written
    return files
