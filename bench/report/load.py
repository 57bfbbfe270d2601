"""Run records -> pandas DataFrames (reads only the saved records, never a model or W&B).

A study folder is `results/<study>/` with `runs/<run_id>/{config.json, summary.json, metrics.csv,
layers.csv, grads.csv}` and an optional `sweep.yaml` (W&B schema, written by `bench sweep`).
Every record is read whatever its status; only the report decides what to use. Eval records
(`runs/<run_id>/evals/<eval_id>/`, written by `bench eval`) are rows too: column `record` is
"run" or "eval <checkpoint> <split>" (a grouping key when both kinds are present, so an eval is
never averaged with the run it measured), `eval_of` the measured run's id ("" for a run).
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from bench import schema
from bench.config import RunConfig, upgrade_limits
from bench.energy import TERMS
from bench.energy.settings import RUN_KEYS as ENERGY_RUN_KEYS
from bench.errors import BenchError
from bench.models import ARCHITECTURES, is_spiking

# config.json carries provenance beside the config keys; these are not settings of the run.
PROVENANCE = schema.PROVENANCE
# Keys that never define a group: identity, bookkeeping, and the seed we aggregate over.
# The neuron `backend` computes the same numbers (bit-identical on CPU, README "Speed").
NOT_GROUPING = ("seed", schema.RUN_ID, "study", "results", "wandb", "project", "data_root",
                "download", "num_workers", "progress_bar", "backend")
# summary.json scalars copied onto the run row as they are.
SUMMARY_SCALARS = schema.SUMMARY_SCALARS
# Energy breakdown terms (uJ per image) -> run-row columns energy_<term>_uj. The current models
# (summary `energy.breakdown_uj_per_image`) have bench.energy's TERMS; records written before 0.2
# (the "simple" model) have one arithmetic term and four memory parts, mapped as OLD_PARTS says.
ENERGY_TERMS = TERMS
OLD_PARTS = {"weights": "weights", "membrane": "potentials", "bias": "bias", "outputs": "outputs"}
ALL_ENERGY_TERMS = ("arithmetic",) + ENERGY_TERMS
OLD_MODEL = "simple (pre-0.2)"
# config.json keys that describe the energy estimate (the run config's energy_* keys; older
# records lack the newer ones)
ENERGY_KEYS = tuple(f"energy_{k}" for k in ENERGY_RUN_KEYS)
NO_SUMMARY = "no summary"  # the run row's status when its folder has no summary.json yet
SUM_PROBE = re.compile(r"^sum(\d+)$")
# layers.csv and grads.csv as rows of Records.layers / .grads (the split and epoch are chosen)
LAYER_COLUMNS = ["uid"] + [c for c in schema.LAYER_COLUMNS if c not in (schema.SPLIT, schema.EPOCH)]
GRAD_COLUMNS = ["uid", *schema.GRAD_COLUMNS]


@dataclass
class Records:
    """Every run record of one or several studies.

    runs: one row per record (every status), config keys as columns, `uid` = study/run_id.
    layers: test-split probe statistics (last test epoch), long: one row per (run, probe).
    grads: per-block gradient norms over training, long: one row per (run, step, group).
    """

    runs: pd.DataFrame
    layers: pd.DataFrame
    grads: pd.DataFrame
    config_keys: list[str]
    sweeps: dict[str, dict] = field(default_factory=dict)
    studies: list[str] = field(default_factory=list)

    @property
    def completed(self) -> pd.DataFrame:
        return self.runs[self.runs[schema.STATUS] == schema.COMPLETED]

    def still_running(self) -> pd.DataFrame:
        """Records that are not finished yet (running, or no summary.json yet)."""
        return self.runs[self.runs[schema.STATUS].isin([schema.RUNNING, NO_SUMMARY])]

    def status_counts(self) -> dict[str, int]:
        counts = self.runs[schema.STATUS].value_counts()
        return {str(k): int(counts[k]) for k in sorted(counts.index)}


def run_dirs(study_dir: Path) -> list[Path]:
    """The record folders of a study: runs/<run_id>/ holding a summary or a config."""
    runs = study_dir / schema.RUNS_DIR
    if not runs.is_dir():
        return []
    return sorted(d for d in runs.iterdir() if d.is_dir() and (
        (d / schema.SUMMARY_FILE).is_file() or (d / schema.CONFIG_FILE).is_file()))


def load_records(dirs: list[str | Path]) -> Records:
    """Read every run record under each study folder; BenchError names a folder without any."""
    rows, layers, grads, sweeps, studies, seen = [], [], [], {}, [], set()
    for d in map(Path, dirs):
        found = run_dirs(d)
        if not found:
            raise BenchError(f"no run records in {d} (expected "
                             f"{d}/{schema.RUNS_DIR}/<run_id>/{schema.SUMMARY_FILE})")
        if d.resolve() in seen:
            raise BenchError(f"study folder {d} given twice")
        seen.add(d.resolve())
        # two roots holding a study of the same name (results/a vs results_gpu/a) stay apart
        # named by the folder itself, resolved: `runs/..` is its study, not ".."
        here = d.resolve()
        name = here.name if here.name not in studies else f"{here.parent.name}/{here.name}"
        studies.append(name)
        sweep = read_sweep(d)
        if sweep is not None:
            sweeps[name] = sweep
        for run in found:
            row, layer_rows, grad_rows = read_run(run, name)
            rows.append(row)
            layers += layer_rows
            grads += grad_rows
            for ev in eval_dirs(run):
                row, layer_rows, _ = read_run(
                    ev, name, uid=f"{name}/{run.name}/{schema.EVALS_DIR}/{ev.name}")
                summary = _read_json(ev / schema.SUMMARY_FILE) or {}
                row.update(run_id=run.name, eval_of=run.name, record=" ".join(
                    ["eval", str(summary.get(schema.CHECKPOINT)), str(summary.get(schema.SPLIT))]))
                rows.append(row)
                layers += layer_rows
    runs = pd.DataFrame(rows)
    config_keys = [c for c in dict.fromkeys(k for r in rows for k in r.get("_config_keys", ()))]
    runs = runs.drop(columns="_config_keys")
    return Records(runs=runs.reset_index(drop=True),
                   layers=_frame(layers, LAYER_COLUMNS, ("uid", schema.PROBE, schema.KIND)),
                   grads=_frame(grads, GRAD_COLUMNS, ("uid", schema.GROUP)),
                   config_keys=config_keys, sweeps=sweeps, studies=studies)


def eval_dirs(run: Path) -> list[Path]:
    evals = run / schema.EVALS_DIR
    if not evals.is_dir():
        return []
    return sorted(d for d in evals.iterdir() if (d / schema.SUMMARY_FILE).is_file())


def read_sweep(study_dir: Path) -> dict | None:
    path = study_dir / "sweep.yaml"
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_bytes().decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError):
        raise BenchError(f"{path}: not valid YAML") from None
    if data is None:
        return None
    if not isinstance(data, dict):
        raise BenchError(f"{path}: damaged sweep file (a {type(data).__name__}, not a mapping); "
                         "fix it or move it away")
    own = data.get("bench")
    for key, value in (("parameters", data.get("parameters")), ("bench", own),
                       ("baseline", data.get("baseline")),
                       ("bench.baseline", own.get("baseline") if isinstance(own, dict) else None)):
        if value is not None and not isinstance(value, dict):
            raise BenchError(f"{path}: damaged sweep file ('{key}' is a {type(value).__name__}, "
                             "not a mapping); fix it or move it away")
    return data


def swept_keys(sweep: dict | None) -> list[str]:
    """Parameters a W&B-schema sweep varies: those with `values` (2+) or a min/max range."""
    params = (sweep or {}).get("parameters") or {}
    out = []
    for key, spec in params.items():
        if not isinstance(spec, dict):
            continue
        values = spec.get("values")
        if (isinstance(values, list) and len(values) > 1) or ("min" in spec and "max" in spec):
            out.append(str(key))
    return out


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _mapping(value: Any) -> dict:
    """A record field that should be a JSON object; anything else (a damaged record) -> {}."""
    return value if isinstance(value, dict) else {}


# summary.json fields that are JSON objects when present (README, "The run record")
SUMMARY_OBJECTS = schema.SUMMARY_OBJECTS


def check_record(path: Path) -> None:
    """A record file bench wrote is a JSON object whose fields have their types; a damaged or
    foreign one stops the report with one line naming it (a report must not guess)."""
    if not path.is_file():
        return
    data = _read_json(path)
    if data is None:
        raise BenchError(f"{path}: damaged run record (not a JSON object); fix it or move its "
                         "run folder away")
    bad = [k for k in SUMMARY_OBJECTS if data.get(k) is not None and not isinstance(data[k], dict)]
    bad += [k for k in SUMMARY_SCALARS if data.get(k) is not None
            and (isinstance(data[k], bool) or not isinstance(data[k], (int, float)))]
    bad += [k for k in (schema.STATUS, schema.ERROR) if data.get(k) is not None
            and not isinstance(data[k], str)]
    if path.name == schema.CONFIG_FILE:
        bad += _bad_config(data, "")
    elif isinstance(data.get(schema.CONFIG), dict):
        bad += _bad_config(data[schema.CONFIG], f"{schema.CONFIG}.")
    if bad:
        raise BenchError(f"{path}: damaged run record ({', '.join(bad)}: wrong type); fix it or "
                         "move its run folder away")


# check_record runs on every record file: the types are read off RunConfig once
_CONFIG_TYPES = {f.name: str(f.type) for f in fields(RunConfig)}


def _bad_config(config: dict, prefix: str) -> list[str]:
    """Recorded config keys whose value is not of their RunConfig type (null is allowed: an
    ANN's T and N, an older record's unset keys): tables and figures compute with them."""
    bad = []
    for key, value in config.items():
        kind = _CONFIG_TYPES.get(key, "")
        if value is None or not kind:
            continue
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ((kind.startswith(("int", "float")) and not number)
                or (kind == "bool" and not isinstance(value, bool))
                or (kind == "str" and not isinstance(value, str))):
            bad.append(f"{prefix}{key}")
    return bad


def read_run(run: Path, study: str, uid: str | None = None) -> tuple[dict, list[dict], list[dict]]:
    """One record -> (run row, layer rows, grad rows); a missing CSV file leaves NaNs."""
    check_record(run / schema.SUMMARY_FILE)
    check_record(run / schema.CONFIG_FILE)
    summary = _read_json(run / schema.SUMMARY_FILE)
    written = _read_json(run / schema.CONFIG_FILE) or {}
    config = _mapping((summary or {}).get(schema.CONFIG)) or written
    config = upgrade_limits({str(k): v for k, v in config.items() if k not in PROVENANCE})
    if config.get("arch") in ARCHITECTURES and not is_spiking(config["arch"]):
        config.update(T=None, N=None)  # records written before ANN runs recorded null
    uid = uid or f"{study}/{run.name}"
    row: dict[str, Any] = {k: v for k, v in config.items() if not isinstance(v, (dict, list))}
    row.update(record="run", uid=uid, study=study, run_id=run.name, path=str(run), eval_of="",
               _config_keys=[k for k in row
                             if k not in ("study", schema.RUN_ID, "results")] + ["record"])
    row[schema.GIT_COMMIT] = written.get(schema.GIT_COMMIT)
    # the header names the library versions; kept here so it need not read config.json again
    row[schema.VERSIONS] = written.get(schema.VERSIONS)
    if summary is None:
        row.update({schema.STATUS: NO_SUMMARY, schema.ERROR: f"no {schema.SUMMARY_FILE} yet"})
        return row, [], []
    error = summary.get(schema.ERROR)
    row.update({schema.STATUS: str(summary.get(schema.STATUS) or "unknown"),
                schema.ERROR: error if error is None else str(error)})
    row.update(_summary_scalars(summary))
    return row, _layers(run, uid, summary), _grads(run, uid)


def _num(value: Any) -> float:
    """A JSON number as float; null, missing or non-numeric -> NaN."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return float("nan")
    return float(value)


def _summary_scalars(summary: dict) -> dict[str, float]:
    out = {k: _num(summary.get(k)) for k in SUMMARY_SCALARS}
    # An ANN has no spikes: an empty probe dict means "not applicable", not "zero spikes",
    # so it can't win "fewest spikes" in a table.
    if not summary.get(schema.SPIKES_PER_IMAGE):
        out[schema.SPIKES_TOTAL_PER_IMAGE] = float("nan")
        out[schema.NONZERO_TOTAL_PER_IMAGE] = float("nan")
    out["test_acc_pct"] = 100.0 * out[schema.TEST_ACC]
    out.update(energy_columns(summary))
    if np.isnan(out[schema.ENERGY_UJ_PER_IMAGE]):
        out[schema.ENERGY_UJ_PER_IMAGE] = out["energy_total_uj"]
    return out


def energy_columns(summary: dict) -> dict[str, Any]:
    """summary `energy` (either schema) -> energy_total_uj, energy_<term>_uj for every term of
    ALL_ENERGY_TERMS (NaN where the record's model has no such term) and `energy_settings`."""
    energy = _mapping(summary.get(schema.ENERGY))
    config = _mapping(summary.get(schema.CONFIG))
    out: dict[str, Any] = {f"energy_{t}_uj": float("nan") for t in ALL_ENERGY_TERMS}
    out["energy_total_uj"] = _num(energy.get(schema.ENERGY_TOTAL_UJ))
    if isinstance(energy.get(schema.ENERGY_BREAKDOWN_UJ), dict):
        parts = energy[schema.ENERGY_BREAKDOWN_UJ]
        out.update({f"energy_{t}_uj": _num(parts.get(t)) for t in ENERGY_TERMS})
    elif energy:
        parts = _mapping(energy.get(schema.OLD_ENERGY_MEMORY_PARTS))
        out["energy_arithmetic_uj"] = _num(energy.get(schema.OLD_ENERGY_ARITH))
        out.update({f"energy_{new}_uj": _num(parts.get(old)) for old, new in OLD_PARTS.items()})
    out["energy_settings"] = energy_settings(energy, config)
    return out


def energy_settings(energy: dict, config: dict) -> str | None:
    """The energy settings of a run in words: from its summary's `energy` (current or pre-0.2
    schema), else from its config keys; None when it names none."""
    current = "model" in energy or schema.ENERGY_BREAKDOWN_UJ in energy
    source = energy if current or energy else {
        k[len("energy_"):]: v for k, v in config.items() if k.startswith("energy_")}
    if not source:
        return None
    if current or "model" in source:
        op, bits, fifo = (source.get(k) for k in ("multilevel_op", "mem_bits", "fifo"))
        parts = [f"model {source.get('model')}", f"{source.get('counting')} counting",
                 f"multi-level spikes as {str(op).upper()}" if op is not None else None,
                 f"SRAM {source.get('sram')}",
                 f"{bits}-bit memory" if bits is not None else None,
                 f"FIFO {fifo}" if fifo is not None else None,
                 f"buffers per {source['buffers']}" if source.get("buffers") else None]
        return ", ".join(p for p in parts if p)
    # records before 0.2: the "simple" model, one 32-bit word per access, Horowitz SRAM on log size
    return (f"model {OLD_MODEL}, {source.get('counting')} counting, {source.get('preset')} "
            f"constants, SRAM horowitz_log, 32-bit memory")


def _read_csv(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV file as dicts of strings (csv module: ~10x faster than one pandas
    read per file when a study has hundreds of runs); a missing or broken file -> []."""
    if not path.is_file():
        return []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error):
        return []


def _layers(run: Path, uid: str, summary: dict) -> list[dict]:
    """Test-split probe rows of the last test epoch.

    Without test rows in layers.csv the test numbers come from summary.json, with each
    probe's kind, depth index, levels and neuron count taken from its other rows (a probe's
    shape is the same in every split), so bounds can still be drawn.
    """
    rows = _read_csv(run / schema.LAYERS_FILE)
    if rows and not {schema.SPLIT, schema.PROBE, schema.SPIKES_PER_IMAGE} <= set(rows[0]):
        rows = []
    test = _last_epoch([r for r in rows if r[schema.SPLIT] == "test"])
    if not test:
        shape = {r[schema.PROBE]: r for r in _last_epoch(rows)}
        test = [r | {c: shape.get(r[schema.PROBE], {}).get(c, r.get(c))
                     for c in (schema.KIND, schema.INDEX, schema.LEVELS, schema.NEURONS)}
                for r in _layers_from_summary(summary)]
    return [{c: r.get(c) for c in LAYER_COLUMNS} | {"uid": uid} for r in test]


def _last_epoch(rows: list[dict]) -> list[dict]:
    if not rows or schema.EPOCH not in rows[0]:
        return rows
    last = max(_num_text(r[schema.EPOCH]) for r in rows)
    return [r for r in rows if _num_text(r[schema.EPOCH]) == last]


def _num_text(text: str | None) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return float("nan")


def _layers_from_summary(summary: dict) -> list[dict]:
    """Probe rows from summary.json (kind guessed from the name; no neuron counts)."""
    spikes = _mapping(summary.get(schema.SPIKES_PER_IMAGE))
    nonzero = _mapping(summary.get(schema.NONZERO_PER_IMAGE))
    maxima = _mapping(summary.get(schema.MAX_SPIKE_PER_PROBE))
    return [{schema.PROBE: p, schema.INDEX: i, schema.KIND: "sum" if SUM_PROBE.match(p) else None,
             schema.SPIKES_PER_IMAGE: _num(v), schema.NONZERO_PER_IMAGE: _num(nonzero.get(p)),
             schema.MAX_SPIKE: _num(maxima.get(p))} for i, (p, v) in enumerate(spikes.items())]


def _grads(run: Path, uid: str) -> list[dict]:
    rows = _read_csv(run / schema.GRADS_FILE)
    if not rows or not set(schema.GRAD_COLUMNS) <= set(rows[0]):
        return []
    return [{"uid": uid, **{c: r[c] for c in schema.GRAD_COLUMNS}} for r in rows]


def _frame(rows: list[dict], columns: list[str], text: tuple[str, ...]) -> pd.DataFrame:
    """One DataFrame from all runs' rows; every column but `text` ones numeric (bad -> NaN)."""
    df = pd.DataFrame(rows, columns=columns)
    for col in columns:
        if col in text:
            df[col] = df[col].astype(object).where(df[col].notna(), None)
        else:
            df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    return df


def group_keys(records: Records) -> list[str]:
    """The keys that define a row of the tables.

    The sweep files' swept parameters, plus any other config key that differs across the
    completed runs (so runs of different settings are never averaged together), minus the
    seed and bookkeeping keys. With nothing varying, `arch` names the single row.
    """
    done = records.completed
    swept = [k for s in records.sweeps.values() for k in swept_keys(s)]
    # a key some runs lack (an older bench's energy_preset) varies too: NaN counts as a value
    varying = [k for k in records.config_keys
               if k in done.columns and done[k].map(str).nunique(dropna=False) > 1]
    keys = [k for k in dict.fromkeys(swept + varying)
            if k not in NOT_GROUPING and k in records.runs.columns]
    if any(k in ENERGY_KEYS for k in keys) and "energy_settings" in done.columns:
        # one key in words instead of six config keys (some absent in older records)
        keys = [k for k in keys if k not in ENERGY_KEYS] + ["energy_settings"]
    if not keys and "arch" in records.runs.columns:
        keys = ["arch"]
    return keys


def sweep_baseline(records: Records) -> dict[str, Any]:
    """The first `bench.baseline` (or legacy top-level `baseline:`) mapping among the studies'
    sweep files ({} if none)."""
    for study in records.studies:
        sweep = records.sweeps.get(study) or {}
        base = (sweep.get("bench") or {}).get("baseline") or sweep.get("baseline")
        if isinstance(base, dict) and base:
            return {str(k): v for k, v in base.items()}
    return {}


def parse_baseline(text: str) -> dict[str, str]:
    """'arch=sew_resnet18,N=4' -> {'arch': 'sew_resnet18', 'N': '4'}."""
    out = {}
    for pair in text.split(","):
        key, sep, value = pair.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise BenchError(f"--baseline expects key=value[,key=value], got {text!r}")
        out[key.strip()] = value.strip()
    return out
