"""`bench figures`: the paper's figures and claims regenerated from whatever studies exist.

    build_figures("results", "reports/paper") -> [every file written]

Each paper figure needs one or more studies (named as the sweep files: results/levels,
results/avalanche, ...). For each present study we draw the figure and set our numbers beside
the paper's (bench.report.paper), with our difference to them and whether the direction of the
claim holds on our runs. A figure whose studies are absent is listed with the sweep command that
would produce it. Our runs may use another dataset than the paper (digits vs CIFAR): every row
names the dataset of its numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd

from bench import schema
from bench.errors import BenchError
from bench.registry import DATASETS
from bench.report import Prepared, plots, prepare, render_figures, sensitivity, tradeoff
from bench.report.header import build_time
from bench.report.index import Page
from bench.report.load import load_records, run_dirs
from bench.report.sensitivity import Pricing, default_pricing
from bench.report.paper import ACC_TOLERANCE_PP, PAPER, REPORTED, SOURCE_UNVERIFIED, Reported
from bench.report.tables import (Table, add_labels, ann_of, display_arch, energy_settings_note,
                                 fmt_mean_std, fmt_number, sum_rows)
from bench.report.verdicts import (FAILS, HOLDS, INCONCLUSIVE, NA, Effect, effect, fails_bold,
                                   interval_text, judge, seeds_of)

__all__ = ["main_figures", "build_figures", "Claim", "FIGURES"]

LEVELS_STUDY = "levels"  # the study (sweeps/levels.yaml) and its figure, not layers.csv's column


# ----------------------------------------------------------------------------- claims



@dataclass(frozen=True)
class Where:
    """What our number of a claim row comes from: data sets, epochs, runs, facet, energy."""

    datasets: tuple[str, ...] = ()
    epochs: str = ""
    runs: str = ""  # "3 + 3": completed runs of each compared group
    facet: str = ""
    energy: str = ""  # the groups' energy settings ("" when none recorded)
    mixed_energy: bool = False  # the compared groups differ in energy settings

    @property
    def text(self) -> str:
        if not self.datasets:
            return "no matching run"
        plural = "" if self.runs == "1" else "s"
        return "; ".join(p for p in (", ".join(self.datasets), self.facet,
                                     f"{self.runs} run{plural}") if p)

    def same_dataset(self, paper: str) -> bool:
        """Our data set(s) are the paper's ('CIFAR-10/100' covers CIFAR-10 and CIFAR-100)."""
        theirs = {f"CIFAR-{p}" if i else p for i, p in enumerate(paper.split("/"))} | {paper}
        return bool(self.datasets) and all(DATASETS.meta(d, "label") in theirs
                                           for d in self.datasets)


@dataclass
class Claim:
    """One row of claims.md: the paper's number beside ours and two verdicts on our runs: the
    DIRECTION of the effect and its SIZE against the paper's number or range (verdicts.py)."""

    figure: str
    claim: str  # the statement judged, e.g. "Sparse has fewer spikes at sum1 than SEW"
    quantity: str  # what `ours` measures
    paper: Reported
    ours: float = math.nan
    setting: Where = field(default_factory=Where)
    # a verdict (VERDICTS); True/False: a decisive check holds/fails; None: our runs can't tell
    direction: bool | str | None = None
    evidence: str = ""  # our numbers behind the verdicts
    energy: bool = False  # an energy row: its energy settings are named
    size: str = NA
    accuracy: str = ""  # energy rows: each compared group's test accuracy

    def row(self) -> dict:
        same = self.setting.same_dataset(self.paper.dataset)
        diff = (self.paper.difference(self.ours) if same and self.paper.unit in _COMPARABLE
                else math.nan)
        if self.paper.unit not in _COMPARABLE:
            compared = "no paper number"
        elif same:
            compared = "difference (same quantity and data set)"
        else:
            compared = (f"not subtracted: our {', '.join(self.setting.datasets) or 'runs'} vs "
                        f"the paper's {self.paper.dataset}; compare directions")
        direction, size = self.direction, self.size
        energy = self.setting.energy if self.energy else ""
        if self.energy and self.setting.mixed_energy:
            direction = size = NA
            energy = f"differ between the compared groups: {energy}"
        if not isinstance(direction, str):
            direction = {True: HOLDS, False: FAILS, None: NA}[direction]
        return {"figure": self.figure, "claim": self.claim, "quantity": self.quantity,
                "paper": self.paper.text, "paper_dataset": self.paper.dataset,
                "paper_setting": self.paper.setting, "source": self.paper.source,
                "ours": self.ours, "unit": self.paper.unit or "",
                "our_dataset": ", ".join(self.setting.datasets), "epochs": self.setting.epochs,
                "runs": self.setting.runs, "our_setting": self.setting.text,
                "energy_settings": energy, "ours_minus_paper": diff, "compared": compared,
                "direction": direction, "size": size, "accuracy": self.accuracy,
                "evidence": self.evidence}


# units in which our number and the paper's are the same kind of quantity
_COMPARABLE = ("%", "pp", "spikes / image", "x", "mJ / image")
CLAIM_COLUMNS = ["figure", "claim", "quantity", "paper", "paper_dataset", "paper_setting",
                 "source", "ours", "unit", "our_dataset", "epochs", "runs", "our_setting",
                 "energy_settings", "ours_minus_paper", "compared", "direction", "size",
                 "accuracy", "evidence"]


def claims_table(claims: list[Claim], name: str = "claims") -> Table:
    numeric = pd.DataFrame([c.row() for c in claims], columns=CLAIM_COLUMNS)
    display = pd.DataFrame({
        "figure": numeric["figure"], "claim": numeric["claim"], "quantity": numeric["quantity"],
        "paper": numeric["paper"] + " (" + numeric["paper_dataset"] + ")"
        + np.where(numeric["source"] == SOURCE_UNVERIFIED, " [unverified]", ""),
        "ours": [_fmt_ours(v, u) for v, u in zip(numeric["ours"], numeric["unit"])],
        "our data set": numeric["our_dataset"].replace("", "n/a"),
        "epochs": numeric["epochs"].replace("", "n/a"), "runs": numeric["runs"].replace("", "0"),
        "ours − paper": [_fmt_ours(v, "pp" if u == "%" else u, signed=True) if np.isfinite(v)
                         else "not compared" if c.startswith("not") else "n/a"
                         for v, u, c in zip(numeric["ours_minus_paper"], numeric["unit"],
                                            numeric["compared"])],
        "direction": numeric["direction"], "size": numeric["size"],
        "our numbers": numeric["evidence"]})
    if numeric["energy_settings"].astype(bool).any():
        display.insert(display.columns.get_loc("ours − paper"), "energy settings",
                       numeric["energy_settings"].replace("", "–"))
    if numeric["accuracy"].astype(bool).any():
        display.insert(display.columns.get_loc("direction"), "accuracy of the groups",
                       numeric["accuracy"].replace("", "–"))
    display = display.astype(str)
    bold = fails_bold(display)
    sentence = (f"{len(claims)} claim rows: the paper's number ({PAPER}; third-party VGG16 "
                f"numbers marked unverified) beside ours, with our data set, epochs and runs. "
                f"Ours − paper only where the quantity and the data set are the same, else "
                f"'not compared'. Two verdicts on our runs, each from the 95 % interval of our "
                f"effect over seeds: direction (holds when the interval excludes no effect on "
                f"the claimed side, fails on the other side) and size (holds when the interval "
                f"lies inside the paper's range, fails when it misses it); 'inconclusive' "
                f"otherwise, with the seeds per group that would decide it; fails in bold. "
                f"Energy rows name their energy settings and the accuracy of each compared "
                f"group.")
    return Table(name, numeric, display, bold, sentence)


def _fmt_ours(value: float, unit: str, signed: bool = False) -> str:
    if value is None or not np.isfinite(value):
        return "n/a"
    digits = 2 if unit in ("%", "pp", "x", "mJ / image") else None
    text = fmt_number(value, digits)
    if signed and value > 0:
        text = "+" + text
    return f"{text} {unit}".strip() if unit not in ("spikes / image",) else text


# ----------------------------------------------------------------------------- lookups

def facets(agg: pd.DataFrame, keys: list[str],
           inner: tuple[str, ...]) -> Iterator[tuple[str, pd.DataFrame]]:
    """Split groups by the keys that are not `inner` (e.g. per N and dataset for arch pairs)."""
    outer = [k for k in keys if k not in inner]
    if not outer:
        yield "", agg
        return
    for values, d in agg.groupby(outer, sort=True, dropna=False):
        yield ", ".join(f"{k}={_plain(v)}" for k, v in zip(outer, np.atleast_1d(values))), d


def _plain(v) -> str:
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def arch_row(d: pd.DataFrame, prefix: str, estimator: str | None = None) -> pd.Series | None:
    """The group whose architecture starts with `prefix` (first by sort order), or None."""
    m = d["arch"].astype(str).str.startswith(prefix)
    if estimator is not None:
        m &= d["barrier_estimator"].astype(str) == estimator
    return d[m].iloc[0] if m.any() else None


def where(d: pd.DataFrame, **eq) -> pd.Series | None:
    m = pd.Series(True, index=d.index)
    for k, v in eq.items():
        m &= d[k].astype(float) == v if isinstance(v, (int, float)) else d[k].astype(str) == v
    return d[m].iloc[0] if m.any() else None


def mean(row: pd.Series | None, col: str) -> float:
    return float(row[f"{col}_mean"]) if row is not None else math.nan


def setting(*rows: pd.Series | None, facet: str = "") -> Where:
    rows = [r for r in rows if r is not None]
    if not rows:
        return Where(facet=facet)
    datasets = tuple(sorted({str(r["dataset"]) for r in rows}))
    epochs = sorted({_plain(r["epochs"]) for r in rows if "epochs" in r and pd.notna(r["epochs"])})
    energy = [str(r["energy_settings"]) for r in rows
              if "energy_settings" in r and isinstance(r["energy_settings"], str)]
    distinct = list(dict.fromkeys(energy))
    return Where(datasets=datasets, epochs=" vs ".join(epochs) or "n/a",
                 runs=" + ".join(str(int(r["runs"])) for r in rows), facet=facet,
                 energy=" | ".join(distinct), mixed_energy=len(distinct) > 1)


def pct_change(new: float, old: float) -> float:
    return 100.0 * (new - old) / old if old else math.nan


def decisive(ok: bool, *values: float) -> bool | None:
    """A deterministic check (no spread to judge): True/False, None when a value is missing."""
    return None if any(not np.isfinite(v) for v in values) else bool(ok)


# ----------------------------------------------------------------------------- figures

@dataclass
class EnergyCompare:
    """One energy claim's comparison, kept so the sensitivity matrix can re-judge it under
    other energy settings: group a against group b on `scale`, the claimed side and range."""

    quantity: str
    facet: str
    a: pd.Series
    b: pd.Series
    scale: str
    side: str
    low: float | None
    high: float | None


@dataclass
class Context:
    studies: dict[str, Prepared]
    out: Path
    page: Page
    claims: list[Claim] = field(default_factory=list)
    runs: pd.DataFrame = field(default_factory=pd.DataFrame)  # every study's done, by uid
    energy: list[EnergyCompare] = field(default_factory=list)


def samples(ctx: Context, row: pd.Series | None, col: str) -> tuple[list[float], list | None]:
    """The per-run values of a group (its completed runs) and their seeds."""
    if row is None or col not in ctx.runs.columns:
        return [], None
    runs = ctx.runs.loc[list(row["uids"])]
    keep = runs[col].astype(float).notna()
    return list(runs.loc[keep, col].astype(float)), seeds_of(ctx.runs, runs.index[keep])


def compare(ctx: Context, a: pd.Series | None, b: pd.Series | None, col: str,
            scale: str) -> Effect:
    """Group a against group b on `col`, over their seeds (verdicts.effect)."""
    (xa, sa), (xb, sb) = samples(ctx, a, col), samples(ctx, b, col)
    return effect(xa, xb, scale, sa, sb)


def accuracies(*rows: pd.Series | None) -> str:
    """'Sparse-ResNet18 92.00 ± 1.00 %; SEW-ResNet18 92.00 ± 2.00 %': beside an energy row, so
    that less energy bought with less accuracy shows."""
    return "; ".join(f"{r['label']} {fmt_mean_std(float(r['test_acc_pct_mean']), float(r['test_acc_pct_std']))} %"
                     for r in rows if r is not None)


def energy_compare(ctx: Context, spec: EnergyCompare) -> tuple[str, str, str]:
    """Judge an energy claim at the recorded energy and keep it for the sensitivity matrix."""
    ctx.energy.append(spec)
    eff = compare(ctx, spec.a, spec.b, schema.ENERGY_UJ_PER_IMAGE, spec.scale)
    return judge(eff, spec.side, spec.low, spec.high)


@dataclass(frozen=True)
class PaperFigure:
    name: str
    title: str
    needs: tuple[str, ...]  # studies, all required
    build: Callable[[Context], list]  # -> figure specs for render_figures; adds claims


def _levels(ctx: Context) -> list:
    prep = ctx.studies[LEVELS_STUDY]
    agg, keys = prep.agg, prep.keys
    snn = agg[~_is_ann(agg)]
    for facet, d in facets(snn, keys, ("T", "N")):
        _levels_claims(ctx, d, facet)
    ann = [p.agg[_is_ann(p.agg)] for n, p in ctx.studies.items() if n != LEVELS_STUDY]
    _vgg16_claims(ctx, pd.concat([agg] + ann, ignore_index=True), energy=False)
    facet_keys = [k for k in keys if k not in ("T", "N")]
    return [(LEVELS_STUDY, lambda: plots.levels_figure(agg, facet_keys),
             f"Accuracy and energy per image over T x N, mean over seeds, from "
             f"{len(prep.done)} completed runs of the levels study. "
             f"{energy_settings_note(agg)[0]}")]


def _levels_claims(ctx: Context, d: pd.DataFrame, facet: str) -> None:
    multi, binary = where(d, T=1, N=4), where(d, T=4, N=1)
    a, b = mean(multi, "test_acc_pct"), mean(binary, "test_acc_pct")
    where_ = setting(multi, binary, facet=facet)
    text = f"[T=1, N=4] matches [T=4, N=1] (within {ACC_TOLERANCE_PP} pp)"
    if multi is None or binary is None:
        gap, size, evidence = math.nan, NA, "needs [T=1,N=4] and [T=4,N=1]"
    else:
        eff = compare(ctx, multi, binary, "test_acc_pct", "difference")
        gap = a - b
        _, size, evidence = judge(eff, None, -ACC_TOLERANCE_PP, ACC_TOLERANCE_PP)
        evidence = f"{a:.2f} % vs {b:.2f} %; gap {evidence}"
    # a "within" claim has no direction: only its size is judged
    ctx.claims += [
        Claim(LEVELS_STUDY, text, "accuracy [T=1, N=4] (%)", REPORTED["levels_acc_t1n4"], a,
              setting(multi, facet=facet), NA, evidence, size=size),
        Claim(LEVELS_STUDY, text, "accuracy [T=4, N=1] (%)", REPORTED["levels_acc_t4n1"], b,
              setting(binary, facet=facet), NA, evidence, size=size),
        Claim(LEVELS_STUDY, text, "accuracy gap (pp)", REPORTED["levels_gap"], gap, where_, NA,
              evidence, size=size)]


def _energy_claims(ctx: Context, d: pd.DataFrame, facet: str) -> None:
    """Binary [T=4, N=1] over multi-level [T=1, N=k] energy for each k > 1 of the study (the
    paper: 2-3x less energy, depending on N)."""
    binary = where(d, T=4, N=1)
    e_bi = mean(binary, schema.ENERGY_UJ_PER_IMAGE)
    paper = REPORTED["energy_vs_binary"]
    for k in sorted(int(n) for n in d["N"].unique() if n > 1):
        ml = where(d, T=1, N=k)
        e_ml = mean(ml, schema.ENERGY_UJ_PER_IMAGE)
        ratio = e_bi / e_ml if e_ml else math.nan
        if not np.isfinite(ratio):
            continue
        quantity = f"energy [T=4, N=1] / [T=1, N={k}] (x)"
        direction, size, evidence = energy_compare(ctx, EnergyCompare(
            quantity, facet, binary, ml, "ratio", ">", paper.low, paper.high))
        ctx.claims.append(Claim(
            "energy", "multi-level at T=1 uses less energy than binary at T=4", quantity, paper,
            ratio, setting(ml, binary, facet=facet), direction,
            f"{fmt_number(e_bi)} vs {fmt_number(e_ml)} µJ per image; ratio {evidence}",
            energy=True, size=size, accuracy=accuracies(binary, ml)))


def _ann_claims(ctx: Context, snn: pd.DataFrame, ann: pd.DataFrame) -> None:
    """ANN over SNN energy for the same architecture and data set, binary [T=4, N=1] and
    multi-level [T=1, N=4]."""
    for (arch, dataset), d in snn.groupby(["arch", "dataset"], sort=True):
        twin = ann[(ann["arch"].astype(str) == (ann_of(arch) or "")) &
                   (ann["dataset"].astype(str) == str(dataset))]
        if twin.empty:
            continue
        a = twin.iloc[0]
        for key, (T, N) in (("ann_over_binary", (4, 1)), ("ann_over_multi", (1, 4))):
            row = where(d, T=T, N=N)
            e_snn, e_ann = (mean(r, schema.ENERGY_UJ_PER_IMAGE) for r in (row, a))
            ratio = e_ann / e_snn if e_snn else math.nan
            if not np.isfinite(ratio):
                continue
            paper = REPORTED[key]
            quantity = f"energy {display_arch(a['arch'])} / {display_arch(arch)} [T={T}, N={N}] (x)"
            direction, size, evidence = energy_compare(ctx, EnergyCompare(
                quantity, str(dataset), a, row, "ratio", ">", paper.value, paper.value))
            ctx.claims.append(Claim(
                "energy", "an SNN uses less energy than the ANN of the same architecture",
                quantity, paper, ratio, setting(a, row), direction,
                f"{fmt_number(e_ann)} vs {fmt_number(e_snn)} µJ per image; ratio {evidence}",
                energy=True, size=size, accuracy=accuracies(a, row)))


def _vgg16_rows(agg: pd.DataFrame, dataset: str, fallback: bool) -> tuple:
    """Our VGG16 [T=4, N=1], [T=1, N=4] and ANN VGG16 groups on `dataset` (or, with
    `fallback`, on whatever dataset the study used when it has no run on that one)."""
    d = agg[agg["dataset"].astype(str) == dataset]
    if d.empty and fallback:
        d = agg
    vgg, ann = d[d["arch"].astype(str) == "vgg16"], d[d["arch"].astype(str) == "ann_vgg16"]
    return where(vgg, T=4, N=1), where(vgg, T=1, N=4), ann.iloc[0] if len(ann) else None


def _vgg16_claims(ctx: Context, agg: pd.DataFrame, energy: bool) -> None:
    """The unverified VGG16 numbers beside our VGG16 runs (CIFAR-100 ones only against our
    CIFAR-100 runs; CIFAR-10 ones against the study's dataset when it has no CIFAR-10 run)."""
    if not energy:
        for ds, tag in (("cifar10", "c10"), ("cifar100", "c100")):
            rows = _vgg16_rows(agg, ds, fallback=tag == "c10")
            for kind, row, what in zip(("binary", "multi", "ann"), rows,
                                       ("VGG16 [T=4, N=1]", "VGG16 [T=1, N=4]", "ANN VGG16")):
                ctx.claims.append(Claim(LEVELS_STUDY, "accuracy as reported",
                                        f"accuracy {what} (%)", REPORTED[f"vgg16_{tag}_{kind}"],
                                        mean(row, "test_acc_pct"), setting(row)))
        return
    rows = _vgg16_rows(agg, "cifar10", fallback=True)
    e_bi, e_ml, e_ann = (mean(r, schema.ENERGY_UJ_PER_IMAGE) / 1000 for r in rows)  # uJ -> mJ
    if not all(np.isfinite(v) for v in (e_bi, e_ml, e_ann)):
        direction, evidence = NA, (f"multi-level {e_ml:.3g}, binary {e_bi:.3g}, ANN {e_ann:.3g} "
                                   f"mJ: needs all three")
    else:
        # the order holds when both steps hold: binary / multi-level > 1 and ANN / binary > 1
        steps = [judge(compare(ctx, hi, lo, schema.ENERGY_UJ_PER_IMAGE, "ratio"), ">", None,
                       None) for hi, lo in ((rows[0], rows[1]), (rows[2], rows[0]))]
        verdicts_ = [s[0] for s in steps]
        direction = (FAILS if FAILS in verdicts_ else HOLDS if all(v == HOLDS for v in verdicts_)
                     else INCONCLUSIVE)
        evidence = (f"multi-level {e_ml:.3g}, binary {e_bi:.3g}, ANN {e_ann:.3g} mJ; binary / "
                    f"multi-level {steps[0][2]}; ANN / binary {steps[1][2]}")
    for kind, row, e in zip(("binary", "multi", "ann"), rows, (e_bi, e_ml, e_ann)):
        ctx.claims.append(Claim("energy", "multi-level < binary < ANN energy (VGG16)",
                                "energy (mJ / image)", REPORTED[f"vgg16_energy_{kind}"], e,
                                setting(*rows), direction, evidence, energy=True,
                                accuracy=accuracies(*rows)))


def _pair_claims(ctx: Context, figure: str, prep: Prepared, reported: bool) -> None:
    """Sparse vs SEW per facet: activity, energy and accuracy (the paper's ranges)."""
    for facet, d in facets(prep.agg, prep.keys, ("arch",)):
        sew, sparse = arch_row(d, "sew_"), arch_row(d, "sparse_")
        if sew is None or sparse is None:
            continue
        where_ = setting(sew, sparse, facet=facet)
        name = f"{display_arch(sparse['arch'])} vs {display_arch(sew['arch'])}"
        for key, col, word in (("activity_change", schema.SPIKES_TOTAL_PER_IMAGE, "activity"),
                               ("energy_change", schema.ENERGY_UJ_PER_IMAGE, "energy")):
            a, b = mean(sparse, col), mean(sew, col)
            change = pct_change(a, b)
            paper = REPORTED[key] if reported else REPORTED["depth"]
            quantity = f"{word} change, {name} (%)"
            if word == "energy":
                direction, size, evidence = energy_compare(ctx, EnergyCompare(
                    quantity, facet, sparse, sew, "change", "<", paper.low, paper.high))
            else:
                direction, size, evidence = judge(compare(ctx, sparse, sew, col, "change"), "<",
                                                  paper.low, paper.high)
            ctx.claims.append(Claim(figure, f"Sparse has lower {word} than SEW", quantity, paper,
                                    change, where_, direction,
                                    f"{fmt_number(a)} vs {fmt_number(b)}; change {evidence}",
                                    energy=word == "energy", size=size,
                                    accuracy=accuracies(sparse, sew) if word == "energy" else ""))
        a, b = mean(sparse, "test_acc_pct"), mean(sew, "test_acc_pct")
        _, size, evidence = judge(compare(ctx, sparse, sew, "test_acc_pct", "difference"), None,
                                  -ACC_TOLERANCE_PP, ACC_TOLERANCE_PP)
        ctx.claims.append(Claim(
            figure, f"Sparse accuracy within {ACC_TOLERANCE_PP} pp of SEW",
            f"accuracy difference, {name} (pp)", REPORTED["acc_gap"] if reported else
            REPORTED["depth"], a - b, where_, NA, f"{a:.2f} % vs {b:.2f} %; gap {evidence}",
            size=size))
        spiking = arch_row(d, "spiking_")
        if spiking is not None and reported:
            col = schema.SPIKES_TOTAL_PER_IMAGE
            a, b = (mean(r, col) for r in (sparse, spiking))
            paper = REPORTED["activity_vs_spiking"]
            direction, size, evidence = judge(compare(ctx, sparse, spiking, col, "change"), "<",
                                              paper.low, paper.high)
            ctx.claims.append(Claim(
                figure, "Sparse has >20 % less activity than Spiking-ResNet",
                f"activity change, {name.split(' vs ')[0]} vs Spiking-ResNet (%)", paper,
                pct_change(a, b), setting(sparse, spiking, facet=facet), direction,
                f"{fmt_number(a)} vs {fmt_number(b)}; change {evidence}", size=size))


def _sum1(ctx: Context, prep: Prepared, row: pd.Series) -> tuple[list[float], list | None]:
    """Per-run spikes per image at sum1 of a group, and the runs' seeds."""
    rows = sum_rows(prep.records.layers, prep.done)
    rows = rows[(rows["k"] == 1) & rows["uid"].isin(list(row["uids"]))]
    by_uid = rows.groupby("uid")[schema.SPIKES_PER_IMAGE].first()
    return list(by_uid.astype(float)), seeds_of(ctx.runs, by_uid.index)


def _sum_claims(ctx: Context, figure: str, prep: Prepared, reported: bool) -> None:
    """sum1 spikes (the paper's 67,848 -> 35,819) and the per-neuron bound at every sum."""
    sums = plots.avalanche_data(prep.done, prep.records.layers)
    if sums.empty:
        return
    for facet, d in facets(prep.agg, prep.keys, ("arch",)):
        sew, sparse = arch_row(d, "sew_"), arch_row(d, "sparse_")
        if sew is None or sparse is None:
            continue
        where_ = setting(sew, sparse, facet=facet)
        s1 = {r["label"]: sums[(sums["label"] == r["label"]) & (sums["k"] == 1)]
              for r in (sew, sparse)}
        a, b = (float(s1[r["label"]]["spikes"].iloc[0]) if len(s1[r["label"]]) else math.nan
                for r in (sew, sparse))
        if reported:
            paper = REPORTED["sum1_change"]
            (xb, kb), (xa, ka) = _sum1(ctx, prep, sparse), _sum1(ctx, prep, sew)
            direction, size, interval = judge(effect(xb, xa, "change", kb, ka), "<",
                                              paper.value, paper.value)
            evidence = (f"{fmt_number(b)} vs {fmt_number(a)} (Sparse vs SEW); change "
                        f"{interval}")
            ctx.claims += [
                Claim(figure, "Sparse has fewer spikes at sum1 than SEW", "spikes at sum1, SEW",
                      REPORTED["sum1_sew"], a, setting(sew, facet=facet), direction, evidence,
                      size=NA),  # counts on another data set: the size is the change's
                Claim(figure, "Sparse has fewer spikes at sum1 than SEW",
                      "spikes at sum1, Sparse", REPORTED["sum1_sparse"], b,
                      setting(sparse, facet=facet), direction, evidence, size=NA),
                Claim(figure, "Sparse has fewer spikes at sum1 than SEW",
                      "change at sum1, Sparse vs SEW (%)", paper, pct_change(b, a), where_,
                      direction, evidence, size=size)]
        _bound_claims(ctx, figure, sums, sew, sparse, where_, reported)


def _bound_claims(ctx: Context, figure: str, sums: pd.DataFrame, sew: pd.Series,
                  sparse: pd.Series, where_: Where, reported: bool) -> None:
    """The barrier bound: a deterministic check on the largest spike seen at any sum of any
    run (no seed spread to weigh: one run over N decides)."""
    mx = {r["label"]: sums[sums["label"] == r["label"]] for r in (sew, sparse)}
    sew_max = float(mx[sew["label"]][schema.MAX_SPIKE].max())
    sparse_max = float(mx[sparse["label"]][schema.MAX_SPIKE].max())
    n = float(mx[sparse["label"]][schema.LEVELS].max())
    paper = REPORTED["avalanche" if reported else "depth"]
    text = (f"SEW max z {sew_max:g}, Sparse max z {sparse_max:g}, N={n:g} (largest spike at "
            f"any sum of any run: a deterministic check)")
    ctx.claims += [
        Claim(figure, "SEW sums exceed one neuron's N (avalanche)",
              "largest spike at a residual sum, SEW", paper, sew_max, where_,
              decisive(sew_max > n, sew_max, n), text),
        Claim(figure, "Sparse barriers never exceed N at any sum",
              "largest spike at a residual sum, Sparse", paper, sparse_max, where_,
              decisive(sparse_max <= n, sparse_max, n), text)]


def _residual_sums(ctx: Context, study: str, reported: bool, what: str) -> list:
    """Claims and the avalanche figure of a SEW-vs-Sparse study (avalanche, depth)."""
    prep = ctx.studies[study]
    _sum_claims(ctx, study, prep, reported=reported)
    _pair_claims(ctx, study, prep, reported=reported)
    return [(study, lambda: plots.avalanche_figure(prep.done, prep.records.layers,
                                                   list(prep.agg["label"])),
             f"{what} (mean ± std over seeds); {len(prep.done)} completed runs.")]


def _avalanche(ctx: Context) -> list:
    return _residual_sums(ctx, "avalanche", True, "Spikes per image at each residual sum along "
                          "depth, SEW vs Sparse, with the per-neuron bounds")


def _activity(ctx: Context) -> list:
    prep = ctx.studies["sparse_n"]
    _pair_claims(ctx, "activity", prep, reported=True)
    panels = [(schema.SPIKES_TOTAL_PER_IMAGE, "spikes per image"),
              (schema.ENERGY_UJ_PER_IMAGE, "energy per image (µJ)"),
              ("test_acc_pct", "accuracy (%)")]
    return [("activity", lambda: plots.bars_figure(prep.agg, panels,
                                                   "Activity, energy and accuracy: SEW vs Sparse"),
             f"Spikes, energy and accuracy of SEW vs Sparse-ResNet18 per N and dataset (mean ± "
             f"std over seeds), {len(prep.done)} completed runs. "
             f"{energy_settings_note(prep.agg)[0]}")]


def _gradient(ctx: Context) -> list:
    prep = ctx.studies["gradient"]
    agg = add_labels(prep.agg.drop(columns="label"), prep.keys, with_estimator=True)
    runs = prep.done.drop(columns="label").merge(agg[prep.keys + ["label"]], on=prep.keys)
    _gradient_claims(ctx, agg, runs, prep)
    return [("gradient", lambda: plots.gradient_figure(runs, prep.records.grads,
                                                       list(agg["label"])),
             f"Per-block gradient norm over training: SEW, Sparse+SG, Sparse+STE (mean over "
             f"seeds); {len(prep.done)} completed runs.")]


def _gradient_claims(ctx: Context, agg: pd.DataFrame, runs: pd.DataFrame, prep: Prepared) -> None:
    g = prep.records.grads.merge(runs[["uid", "label"]], on="uid")
    blocks = sorted((b for b in g[schema.GROUP].unique() if b not in (schema.TOTAL_GROUP, "stem")),
                    key=plots.block_order)
    if not blocks:
        return
    first = blocks[0]
    per_run = g[g[schema.GROUP] == first].groupby(["label", "uid"])[schema.GRAD_NORM].mean()
    norm = per_run.groupby("label").mean()
    # SEW has no barrier: its barrier_estimator changes nothing; prefer the "ste" twin
    rows = {"SEW": arch_row(agg, "sew_", "ste") if "barrier_estimator" in agg else None,
            "SG": arch_row(agg, "sparse_", "sigmoid"), "STE": arch_row(agg, "sparse_", "ste")}
    if rows["SEW"] is None:
        rows["SEW"] = arch_row(agg, "sew_")
    val = {k: float(norm.get(r["label"], math.nan)) if r is not None else math.nan
           for k, r in rows.items()}
    where_ = setting(*rows.values())
    sew, sg, ste = val["SEW"], val["SG"], val["STE"]

    def runs_of(key: str) -> tuple[list[float], list | None]:
        r = rows[key]
        if r is None or r["label"] not in norm.index:
            return [], None
        v = per_run.loc[r["label"]]
        return list(v.astype(float)), seeds_of(ctx.runs, v.index)

    (x_sew, k_sew), (x_sg, k_sg), (x_ste, k_ste) = (runs_of(k) for k in ("SEW", "SG", "STE"))
    sg_ste = effect(x_sg, x_ste, "ratio", k_sg, k_ste)
    d_sg, _, e_sg = judge(sg_ste, "<", None, None)
    closer, e_closer = _closer(effect(x_ste, x_sew, "ratio", k_ste, k_sew),
                               effect(x_sg, x_sew, "ratio", k_sg, k_sew))
    ctx.claims += [
        Claim("gradient", f"Sparse+SG passes less gradient to {first} than Sparse+STE",
              f"{first} gradient norm, Sparse+SG", REPORTED["gradient_sg"], sg, where_, d_sg,
              f"SG {sg:.3g} vs STE {ste:.3g}; SG / STE {e_sg}"),
        Claim("gradient", "Sparse+STE is closer to SEW than Sparse+SG (log ratio)",
              f"{first} gradient norm, Sparse+STE", REPORTED["gradient_ste"], ste, where_,
              closer, f"SEW {sew:.3g}, STE {ste:.3g}, SG {sg:.3g}; {e_closer}")]


def _closer(ste: Effect, sg: Effect) -> tuple[str, str]:
    """Is STE's log ratio to SEW nearer 0 than SG's? Conservative: 'holds' when every value of
    STE's interval is nearer 0 than every value of SG's, 'fails' the other way round."""
    text = f"STE / SEW {interval_text(ste)}; SG / SEW {interval_text(sg)}"
    if not (np.isfinite(ste.center) and np.isfinite(sg.center)):
        return NA, text
    if not (ste.ok and sg.ok):
        return INCONCLUSIVE, text

    def near(e: Effect) -> float:
        return 0.0 if e.lo <= 0 <= e.hi else min(abs(e.lo), abs(e.hi))

    def far(e: Effect) -> float:
        return max(abs(e.lo), abs(e.hi))

    verdict_ = HOLDS if far(ste) < near(sg) else FAILS if far(sg) < near(ste) else INCONCLUSIVE
    return verdict_, text


def _dvs(ctx: Context) -> list:
    preps = [ctx.studies[s] for s in ("dvs", "dvs_binary") if s in ctx.studies]
    agg = pd.concat([p.agg for p in preps], ignore_index=True)
    n_runs = sum(len(p.done) for p in preps)
    t1 = agg[agg["T"].astype(float) == 1]
    multi = t1[t1["N"].astype(float) > 1]
    best = (multi.loc[multi["test_acc_pct_mean"].idxmax()]
            if multi["test_acc_pct_mean"].notna().any() else None)
    bin1 = where(t1, N=1)
    long = agg[(agg["N"].astype(float) == 1) & (agg["T"].astype(float) > 1)]
    bin_long = long.loc[long["T"].astype(float).idxmax()] if len(long) else None
    a, b1 = mean(best, "test_acc_pct"), mean(bin1, "test_acc_pct")
    bl = mean(bin_long, "test_acc_pct")
    t_long = float(bin_long["T"]) if bin_long is not None else math.nan
    n_best = f"N={_plain(best['N'])}" if best is not None else "N>1"
    more, _, e_more = judge(compare(ctx, best, bin1, "test_acc_pct", "difference"), ">", None,
                            None)
    ctx.claims += [
        Claim("dvs", "multi-level at T=1 is more accurate than binary at T=1",
              f"accuracy at T=1, {n_best} (%)", REPORTED["dvs_t1_acc"], a, setting(best, bin1),
              more, f"{a:.2f} % vs {b1:.2f} % (binary T=1); gap {e_more}"),
        Claim("dvs", f"T=1 multi-level within {ACC_TOLERANCE_PP} pp of (or above) binary at "
              f"T=10", "latency cut, T of binary / T=1 (x)", REPORTED["dvs_t1"], t_long,
              setting(best, bin_long), NA,
              **_dvs_within(ctx, best, bin_long, a, bl, t_long))]
    hline = {"test_acc_pct": (bl, f"binary T={_plain(t_long)}")} if np.isfinite(bl) else None
    shown = agg[agg["T"].astype(float) == 1]
    return [("dvs", lambda: plots.bars_figure(shown, [("test_acc_pct", "accuracy (%)")],
                                              "Accuracy at T=1 per N", hline),
             f"Accuracy at T=1 per N, with the best binary run at T>1 as a dashed line; "
             f"{n_runs} completed runs.")]


def _dvs_within(ctx: Context, best, bin_long, a: float, bl: float,
                t_long: float) -> dict[str, str]:
    """One-sided 'within': the gap's interval must lie above -tolerance."""
    if best is None or bin_long is None:
        return {"size": NA, "evidence": "no binary run with T>1 (see the dvs sweep files)"}
    _, size, evidence = judge(compare(ctx, best, bin_long, "test_acc_pct", "difference"), None,
                              -ACC_TOLERANCE_PP, None)
    return {"size": size,
            "evidence": f"{a:.2f} % at T=1 vs {bl:.2f} % at T={_plain(t_long)}; gap {evidence}"}


def _is_ann(agg: pd.DataFrame) -> pd.Series:
    return agg["N"].isna()  # no spike levels (an ANN's run record has T = N = null)


def _energy(ctx: Context) -> list:
    """The energy claims and figure: SNNs of the levels study, ANNs of any study (the ANN
    baselines are the energy study: sweeps/energy.yaml)."""
    levels = ctx.studies[LEVELS_STUDY]
    snn = levels.agg[~_is_ann(levels.agg)]
    ann = pd.concat([p.agg[_is_ann(p.agg)] for p in ctx.studies.values()], ignore_index=True)
    for facet, d in facets(snn, levels.keys, ("T", "N")):
        _energy_claims(ctx, d, facet)
    _ann_claims(ctx, snn, ann)
    _vgg16_claims(ctx, pd.concat([snn, ann], ignore_index=True), energy=True)
    keep = (snn["T"].astype(float) == 1) | (snn["N"].astype(float) == 1)
    rows = pd.concat([snn[keep], ann], ignore_index=True).drop_duplicates(
        subset=["label", "arch", "T", "N"])
    rows, note = plots.one_energy_setting(rows)
    missing = "" if len(ann) else (" No ANN run in any study: `bench sweep sweeps/energy.yaml` "
                                   "trains the ANN baselines.")
    return [("energy", lambda: plots.energy_figure(rows),
             f"Energy per test image: (a) total, (b) the energy model's terms as shares of the "
             f"total; {plots.categories_text(rows)} (SNNs: T=1, or N=1), mean over seeds. "
             f"{note}{missing}")]


def _depth(ctx: Context) -> list:
    return _residual_sums(ctx, "depth", False, "ResNet34: spikes per image at each residual sum, "
                          "SEW vs Sparse")


FIGURES = (
    PaperFigure(LEVELS_STUDY, "Latency / levels trade: [T=1, N=4] vs [T=4, N=1]", (LEVELS_STUDY,),
                _levels),
    PaperFigure("avalanche", "Spike avalanche per residual sum: SEW vs Sparse-ResNet18",
                ("avalanche",), _avalanche),
    PaperFigure("activity", "Activity and energy of SEW vs Sparse over N", ("sparse_n",),
                _activity),
    PaperFigure("gradient", "Gradient flow: SEW, Sparse+SG, Sparse+STE", ("gradient",), _gradient),
    PaperFigure("dvs", "CIFAR10-DVS at T=1", ("dvs",), _dvs),
    PaperFigure("energy", "Energy vs binary SNN and ANN", (LEVELS_STUDY,), _energy),
    PaperFigure("depth", "Deeper networks: ResNet34 SEW vs Sparse (open question)", ("depth",),
                _depth),
)
# studies read when present, beyond those a figure needs: the ANN baselines of the energy
# figure and the long binary DVS runs
OPTIONAL_STUDIES = ("energy", "dvs_binary")
STUDIES = tuple(dict.fromkeys([s for f in FIGURES for s in f.needs] + list(OPTIONAL_STUDIES)))


def sweep_command(study: str) -> str:
    """The command that runs a paper study: its sweep file is the repository's sweeps/<study>.yaml
    (tests/test_figures.py checks there is one per STUDIES). The report reads no sweep file, so
    an installed package, which has no sweeps/, prints the same commands."""
    return f"bench sweep sweeps/{study}.yaml"


def load_studies(results: Path) -> tuple[dict[str, Prepared], dict[str, str]]:
    """Studies with completed runs, and why each other study can't be used."""
    found, why = {}, {}
    for name in STUDIES:
        folder = results / name
        if not run_dirs(folder):
            why[name] = f"no run records in {folder}"
            continue
        prep = prepare(load_records([folder]))
        if prep.done.empty:
            why[name] = f"no completed run in {folder} ({len(prep.records.runs)} records)"
            continue
        # each group's runs, so verdicts read the per-run values (not only mean and std)
        uids = prep.done.groupby("label")["uid"].agg(tuple)
        prep.agg["uids"] = prep.agg["label"].map(uids)
        found[name] = prep
    return found, why


def build_figures(results: str | Path = "results", out: str | Path = "reports/paper",
                  paper: bool = True, pricing: Pricing | None = None) -> list[Path]:
    """Regenerate every paper figure the present studies allow; list the others.
    `paper=False` leaves out the paper-size PDFs (screen PNGs only); `pricing` reprices runs
    for the energy claims' sensitivity matrix (default: bench.energy's)."""
    results, out = Path(results), Path(out)
    if not results.is_dir():
        raise BenchError(f"results folder not found: {results}")
    studies, why = load_studies(results)  # a damaged record stops it before `out` is made
    out.mkdir(parents=True, exist_ok=True)
    page = Page("The paper's figures and claims, regenerated")
    _intro(page, studies, results)
    runs = [p.done for p in studies.values()]
    ctx = Context(studies, out, page,
                  runs=pd.concat(runs, ignore_index=True).set_index("uid") if runs
                  else pd.DataFrame())
    files: list[Path] = []
    missing = []
    for fig in FIGURES:
        absent = [s for s in fig.needs if s not in studies]
        if absent:
            missing.append((fig, absent))
            continue
        page.heading(fig.title)
        before = len(ctx.claims)
        files += render_figures(fig.build(ctx), out, page, paper)
        if len(ctx.claims) > before:
            part = claims_table(ctx.claims[before:], f"claims_{fig.name}")
            page.table(part, [], out)
    files += _tradeoffs(studies, out, page, paper)
    files += _sensitivity(ctx, pricing or default_pricing())
    _missing(page, missing, why, studies)
    if ctx.claims:
        table = claims_table(ctx.claims)
        page.heading("All claims")
        written = table.write(out)
        page.table(table, written, out)
        files += written
    else:
        page.text("No claim could be checked: no study with completed runs.")
    return files + page.write(out)


def _tradeoffs(studies: dict[str, Prepared], out: Path, page: Page, paper: bool) -> list[Path]:
    """Accuracy against energy for every study with two or more configurations."""
    specs = [(f"tradeoff-{name}", lambda p=p: tradeoff.tradeoff_figure(p.agg),
              tradeoff.caption(p.agg, len(p.done)))
             for name, p in studies.items() if len(p.agg) >= 2]
    if not specs:
        return []
    page.heading("Accuracy vs energy")
    return render_figures(specs, out, page, paper)


def _sensitivity(ctx: Context, pricing: Pricing) -> list[Path]:
    """The energy claims judged again under each energy setting (bench.report.sensitivity)."""
    if not ctx.energy:
        return []
    ctx.page.heading("Sensitivity of the energy claims")
    try:
        cells = sensitivity.matrix(ctx.energy, ctx.runs, pricing)
    except sensitivity.CannotReprice as exc:
        ctx.page.text(f"No sensitivity matrix: run {exc} keeps no counts to reprice (records "
                      f"written before energy repricing existed); re-evaluate it (`bench eval`) "
                      f"or re-run it.")
        return []
    table = sensitivity.table(cells)
    written = table.write(ctx.out)
    ctx.page.table(table, written, ctx.out)  # its caption ends with the all-hold sentence
    return written


def _intro(page: Page, studies: dict[str, Prepared], results: Path) -> None:
    page.text(f"Claims of {PAPER} (its reported numbers: bench/report/paper.py) set beside our runs under {results}. "
              "Our numbers come from the data set named in each row, which need not be the "
              "paper's (digits runs are 8x8 scikit-learn digits, not CIFAR, and often a few "
              "epochs): a difference to the paper's number is shown only where the quantity "
              "and the data set are the same; elsewhere the direction verdicts are what "
              "transfers. Third-party VGG16 numbers are unverified leads.")
    page.bullets([f"{name}: {_study_line(p)}" for name, p in studies.items()]
                 or ["no study with completed runs"])
    page.text(f"Report built {build_time()}.")


def _study_line(prep: Prepared) -> str:
    """'6 completed of 8 run records; data set digits; epochs 2; commit 3f9dcc2aa0b1; ...'."""
    done = prep.done
    datasets = ", ".join(sorted(map(str, done["dataset"].unique())))
    epochs = (", ".join(sorted({_plain(e) for e in done["epochs"].dropna()}))
              if "epochs" in done.columns else "n/a") or "n/a"
    commits = sorted({str(c)[:12] for c in done.get("git_commit", pd.Series(dtype=object))
                      .dropna()}) or ["not recorded"]
    text = (f"{len(done)} completed of {len(prep.records.runs)} run records; data set "
            f"{datasets}; epochs {epochs}; bench commit {', '.join(commits)}")
    running = prep.records.still_running()
    if len(running):
        text += f"; still running (not used): {', '.join(sorted(running['uid']))}"
    return text


def _missing(page: Page, missing: list, why: dict[str, str], studies: dict) -> None:
    """Figures without their studies, each with the exact command that would produce them."""
    extra = []
    if "dvs" in studies and "dvs_binary" not in studies and not _has_long_binary(studies["dvs"]):
        extra.append(("dvs (binary T=10 baseline)", ["dvs_binary"]))
    if LEVELS_STUDY in studies and "energy" not in studies \
            and not any(_is_ann(p.agg).any() for p in studies.values()):
        extra.append(("energy (ANN baselines)", ["energy"]))
    if not missing and not extra:
        page.heading("Missing figures")
        page.text("None: every figure of the paper that the harness can produce is above.")
        return
    page.heading("Missing figures")
    page.text("These figures need studies that are absent or have no completed run; each "
              "command below produces one (add `--set dataset=digits --set epochs=2` for a "
              "quick run on the embedded digits):")
    items, commands = [], []
    for fig, absent in [(f.name, a) for f, a in missing] + extra:
        cmds = [sweep_command(s) for s in absent]
        if fig == "dvs":
            cmds.append(sweep_command("dvs_binary"))
        reasons = "; ".join(why.get(s, "") for s in absent)
        items.append(f"{fig}: {reasons} -> run `{'` and `'.join(cmds)}`")
        commands += [c for c in cmds if c not in commands]
    page.bullets(items)
    page.code(commands)


def _has_long_binary(prep: Prepared) -> bool:
    agg = prep.agg
    return bool(((agg["N"].astype(float) == 1) & (agg["T"].astype(float) > 1)).any())


def main_figures(results: str = "results", out: str = "reports/paper") -> int:
    files = build_figures(results, out)
    index = next(f for f in files if f.name == "index.md")
    print(f"figures: {len(files)} files in {index.parent} (open {index})")
    return 0
