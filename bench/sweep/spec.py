"""A sweep file (W&B sweep-configuration schema) parsed, validated and mapped onto Optuna.

    spec = load_spec("sweeps/avalanche.yaml", sets=["dataset=digits"])
    spec.distributions()   # swept name -> optuna distribution
    spec.slots()           # one params dict per trial to enqueue ({} = let the sampler choose)

Every problem is a one-line BenchError naming the file, the key and what is allowed, raised
before any trial starts.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from optuna.distributions import (BaseDistribution, CategoricalDistribution, FloatDistribution,
                                  IntDistribution)

from bench import config as cfgmod
from bench import schema
from bench.config import short
from bench.errors import BenchError

METHODS = ("grid", "random", "bayes")
GOALS = ("minimize", "maximize")
TOP_KEYS = ("name", "method", "metric", "parameters", "early_terminate", "run_cap", "description",
            "program", "command", "project", "entity", "bench", "baseline")
# `bench:` is the one key W&B's sweep schema does not know: bench's own settings live under it
# (`baseline:` at the top level is still read, from files written before `bench:` existed)
BENCH_KEYS = ("baseline", "replicates", "objectives")
IGNORED_KEYS = ("program", "command", "entity")  # W&B agent settings: bench runs trials itself
METRIC_KEYS = ("name", "goal", "target")
PARAM_KEYS = ("value", "values", "min", "max", "distribution", "q")
DISTRIBUTIONS = ("constant", "categorical", "int_uniform", "uniform", "log_uniform_values",
                 "q_uniform")
HYPERBAND_KEYS = ("type", "min_iter", "max_iter", "s", "eta", "strict")
RESERVED = ("study", "run_id", "results")  # set by bench sweep for every trial
# summary.json scalars a sweep can optimise, and their per-epoch counterpart for pruning
SUMMARY_METRICS = {
    schema.TEST_ACC: schema.logged("val", schema.ACC),
    schema.VAL_ACC: schema.logged("val", schema.ACC),
    schema.TEST_LOSS: schema.logged("val", schema.LOSS),
    schema.SPIKES_TOTAL_PER_IMAGE: schema.logged("val", schema.SPIKES_TOTAL_PER_IMAGE),
    schema.NONZERO_TOTAL_PER_IMAGE: None,
    schema.ENERGY_UJ_PER_IMAGE: schema.logged("val", schema.ENERGY_UJ_PER_IMAGE),
    schema.DURATION_S: None, schema.EPOCHS_COMPLETED: None}
MAX_TRIALS = 10_000  # slots of one sweep (grid points run, or run_cap); README "Limits"


def logged_metrics() -> list[str]:
    """Per-epoch columns of metrics.csv that a sweep may optimise."""
    return list(schema.EPOCH_METRICS)


def _kind(key: str) -> str:
    """'int', 'float', 'bool' or 'str': the type of a RunConfig field ('float' for an
    `int | float` one, the batch limits: a range of them is integer only by its distribution)."""
    t = cfgmod._field_type(key)
    t = "float" if t == "int | float" else t.split("|")[0].strip()
    return t if t in ("int", "float", "bool") else "str"


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_scalar(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))


@dataclass(frozen=True)
class Param:
    """One swept parameter: `values` (categorical) or `min`/`max` with a distribution."""

    name: str
    distribution: str  # categorical | int_uniform | uniform | log_uniform_values | q_uniform
    values: tuple = ()
    low: float | int | None = None
    high: float | int | None = None
    q: float | None = None

    def optuna(self) -> BaseDistribution:
        """The Optuna distribution (see tests/test_sweep_spec.py for the whole table)."""
        integer = _kind(self.name) == "int" or self.distribution == "int_uniform"
        if self.distribution == "categorical":
            return CategoricalDistribution(self.values)
        if self.distribution == "int_uniform":
            return IntDistribution(int(self.low), int(self.high))
        if self.distribution == "uniform":
            return FloatDistribution(float(self.low), float(self.high))
        if self.distribution == "log_uniform_values":
            if integer:  # an int key (batch_size) stays an int: Optuna has a log int distribution
                return IntDistribution(int(self.low), int(self.high), log=True)
            return FloatDistribution(float(self.low), float(self.high), log=True)
        if integer:  # q_uniform on an int key
            return IntDistribution(int(self.low), int(self.high), step=int(self.q))
        return FloatDistribution(float(self.low), float(self.high), step=float(self.q))

    def grid_size(self) -> int:
        """How many points a grid visits on this axis (counted, never listed)."""
        if self.distribution == "categorical":
            return len(self.values)
        if self.distribution == "int_uniform":
            return int(self.high) - int(self.low) + 1
        if self.distribution == "q_uniform":
            dist = self.optuna()
            return int(math.floor((dist.high - dist.low) / dist.step + 1e-9)) + 1
        raise BenchError(f"parameter '{self.name}': method grid cannot enumerate the continuous "
                         f"distribution '{self.distribution}'; use values, int_uniform or q_uniform")

    def grid_value(self, i: int) -> Any:
        """The i-th point of this axis (W&B enumerates values, int_uniform and q_uniform)."""
        if self.distribution == "categorical":
            return self.values[i]
        if self.distribution == "int_uniform":
            return int(self.low) + i
        dist = self.optuna()
        if isinstance(dist, IntDistribution):
            return dist.low + i * dist.step
        return round(dist.low + i * dist.step, 12)

    def grid_values(self) -> list:
        return [self.grid_value(i) for i in range(self.grid_size())]

    def to_yaml(self) -> dict[str, Any]:
        if self.distribution == "categorical":
            return {"values": list(self.values)}
        out: dict[str, Any] = {"distribution": self.distribution, "min": self.low, "max": self.high}
        if self.q is not None:
            out["q"] = self.q
        return out


@dataclass(frozen=True)
class SweepSpec:
    name: str
    method: str
    metric: str
    goal: str
    params: dict[str, Param]  # swept parameters, file order
    fixed: dict[str, Any]  # `value` parameters and --set overrides (coerced)
    run_cap: int
    target: float | None = None
    early_terminate: dict[str, Any] | None = None
    project: str | None = None
    baseline: dict[str, Any] = field(default_factory=dict)
    description: str | None = None
    replicates: tuple[str, ...] = ()  # swept keys whose values repeat one configuration (seed)
    # bench.objectives: (name, goal) pairs; two or more make the study multi-objective
    objectives: tuple[tuple[str, str], ...] = ()

    @property
    def direction(self) -> str:
        return self.goal

    @property
    def directions(self) -> list[str]:
        """Optuna's study directions: one per objective, or the metric's goal."""
        return [g for _, g in self.objectives] or [self.goal]

    @property
    def metric_names(self) -> list[str]:
        """What each trial returns: the objectives' names, or the metric's."""
        return [n for n, _ in self.objectives] or [self.metric]

    def distributions(self) -> dict[str, BaseDistribution]:
        """The searched parameters (Optuna's params); replicate keys are not searched."""
        return {name: p.optuna() for name, p in self.params.items()
                if name not in self.replicates}

    def grid_size(self) -> int:
        return math.prod(p.grid_size() for p in self.params.values())

    def grid_point(self, k: int) -> dict[str, Any]:
        """The k-th grid point in itertools.product order (the last parameter varies fastest,
        replicate keys slowest, so each configuration's first replicate runs before any second
        one), computed from k so a huge grid with a small run_cap is never listed."""
        point = {}
        names = [*self.replicates, *(n for n in self.params if n not in self.replicates)]
        for name in reversed(names):
            p = self.params[name]
            k, i = divmod(k, p.grid_size())
            point[name] = p.grid_value(i)
        return {name: point[name] for name in self.params}

    def grid(self) -> list[dict[str, Any]]:
        """Every point (grid_point order)."""
        return [self.grid_point(k) for k in range(self.grid_size())]

    def slots(self) -> list[dict[str, Any]]:
        """The trials of the sweep, enqueued once each: grid points, or run_cap empty dicts
        (an enqueued trial with no fixed params is sampled by the study's sampler)."""
        if self.method == "grid":
            return [self.grid_point(k) for k in range(self.run_cap)]
        return [{} for _ in range(self.run_cap)]

    def monitor(self) -> str | None:
        """The per-epoch metric that hyperband pruning watches (None: cannot prune on it)."""
        return SUMMARY_METRICS.get(self.metric, self.metric if self.metric.startswith("val/")
                                   else None)

    def hyperband(self) -> dict[str, Any] | None:
        """HyperbandPruner arguments from early_terminate (W&B's hyperband bands, see spec docs)."""
        et = self.early_terminate
        if not et:
            return None
        eta = int(et.get("eta", 3))
        if "min_iter" in et:
            low = int(et["min_iter"])
        else:  # W&B: bands at max_iter / eta^k, k = 1..s; the smallest is the first rung
            low = max(1, int(et["max_iter"] / eta ** int(et["s"])))
        high: int | str = int(et["max_iter"]) if "max_iter" in et else "auto"
        if high == "auto" and "epochs" in self.fixed:
            high = int(self.fixed["epochs"])
        return {"min_resource": low, "max_resource": high, "reduction_factor": eta}

    def to_dict(self) -> dict[str, Any]:
        """The resolved sweep (after --set) in W&B schema, as saved to results/<name>/sweep.yaml."""
        params: dict[str, Any] = {k: {"value": v} for k, v in self.fixed.items()}
        params.update({k: p.to_yaml() for k, p in self.params.items()})
        metric: dict[str, Any] = {"name": self.metric, "goal": self.goal}
        if self.target is not None:
            metric["target"] = self.target
        out: dict[str, Any] = {"name": self.name, "method": self.method, "metric": metric,
                               "parameters": params, "run_cap": self.run_cap}
        if self.description:
            out["description"] = self.description
        if self.project:
            out["project"] = self.project
        if self.early_terminate:
            out["early_terminate"] = dict(self.early_terminate)
        own: dict[str, Any] = {}
        if self.baseline:
            own["baseline"] = dict(self.baseline)
        if self.replicates:
            own["replicates"] = list(self.replicates)
        if self.objectives:
            own["objectives"] = [{"name": n, "goal": g} for n, g in self.objectives]
        if own:
            out["bench"] = own
        return out

    def to_wandb(self) -> dict[str, Any]:
        """The resolved sweep as W&B's schema accepts it (without bench's own `bench:` key)."""
        out = self.to_dict()
        out.pop("bench", None)
        return out

    def fingerprint(self) -> str:
        """What must match for a re-run to continue the same study (not the description)."""
        d = self.to_dict()
        d.pop("description", None)
        return json.dumps(d, sort_keys=True, default=str)


def load_spec(path: str | Path, sets: list[str] | None = None) -> SweepSpec:
    """Read, validate and resolve a sweep file; `sets` are --set key=value overrides."""
    data = cfgmod.load_yaml(path)  # missing file, YAML syntax, duplicated keys, non-mapping
    return parse_spec(data, source=str(path), default_name=Path(path).stem, sets=sets)


def parse_spec(data: Mapping[str, Any], *, source: str = "sweep", default_name: str = "sweep",
               sets: list[str] | None = None) -> SweepSpec:
    where = f"{source}:"
    for key in data:
        if key not in TOP_KEYS:
            raise BenchError(f"{where} unknown sweep key '{key}'; allowed: {', '.join(TOP_KEYS)}")
    name = _name(data.get("name", default_name), where)
    method = data.get("method")
    if method is None:
        raise BenchError(f"{where} 'method' is missing; use one of {', '.join(METHODS)}")
    if method not in METHODS:
        raise BenchError(f"{where} method {short(method)} is not one of {', '.join(METHODS)}")
    fixed, params = _parameters(data.get("parameters"), where)
    _apply_sets(fixed, params, sets, where)
    _check_config(fixed, params, where)
    metric, goal, target = _metric(data.get("metric"), method, data.get("early_terminate"), where)
    early = _early_terminate(data.get("early_terminate"), where)
    run_cap = _run_cap(data.get("run_cap"), method, where)
    if method == "grid":
        try:
            size = math.prod(p.grid_size() for p in params.values())
        except BenchError as exc:
            raise BenchError(f"{where} {exc}") from None
        if run_cap is None and size > MAX_TRIALS:
            raise BenchError(f"{where} the grid has {size} points, over the limit of "
                             f"{MAX_TRIALS} trials; shrink it, or set run_cap to run its first "
                             "points")
        run_cap = size if run_cap is None else min(run_cap, size)
    elif run_cap is None:
        raise BenchError(f"{where} method {method} needs 'run_cap' (the number of trials)")
    if method == "random" and not params:
        raise BenchError(f"{where} method random needs at least one swept parameter")
    own = _bench(data, where)
    spec = SweepSpec(name=name, method=method, metric=metric, goal=goal, params=params,
                     fixed=fixed, run_cap=run_cap, target=target, early_terminate=early,
                     project=_project(data.get("project"), where),
                     baseline=_baseline(own.get("baseline"), where),
                     description=_opt_str(data.get("description"), "description", where),
                     replicates=_replicates(own.get("replicates"), method, params, where),
                     objectives=_objectives(own.get("objectives"), early, where))
    if spec.objectives and spec.replicates:
        raise BenchError(f"{where} bench.objectives and bench.replicates do not go together yet "
                         "(a multi-objective study has a Pareto front of trials, not of "
                         "configurations' means); drop one")
    if early and spec.monitor() is None:
        raise BenchError(f"{where} early_terminate needs a metric measured every epoch; "
                         f"'{metric}' is not (use val/acc, val/loss, test_acc, val_acc or test_loss)")
    return spec


def _name(value: Any, where: str) -> str:
    return cfgmod.check_name(f"{where} name", value)


def _project(value: Any, where: str) -> str | None:
    """The W&B project of every trial: a name like the sweep's (bench.config.check_name)."""
    return None if value is None else cfgmod.check_name(f"{where} project", value)


def _opt_str(value: Any, key: str, where: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise BenchError(f"{where} '{key}' must be a string, got {short(value)}")
    return value


def _parameters(raw: Any, where: str) -> tuple[dict[str, Any], dict[str, Param]]:
    if not isinstance(raw, dict) or not raw:
        raise BenchError(f"{where} 'parameters' must be a non-empty mapping of config keys")
    fixed: dict[str, Any] = {}
    params: dict[str, Param] = {}
    for name, body in raw.items():
        _check_name(name, where)
        if not isinstance(body, dict):
            raise BenchError(f"{where} parameter '{name}' must be a mapping with value, values "
                             f"or min/max, got {short(body)}")
        for key in body:
            if key not in PARAM_KEYS:
                raise BenchError(f"{where} parameter '{name}': unknown key '{key}'; "
                                 f"allowed: {', '.join(PARAM_KEYS)}")
        parsed = _parameter(name, body, where)
        if isinstance(parsed, Param):
            params[name] = parsed
        else:
            fixed[name] = parsed[0]
    return fixed, params


def _check_name(name: Any, where: str) -> None:
    if name in RESERVED:
        raise BenchError(f"{where} parameter '{name}' is set by bench sweep for every trial "
                         "(study = sweep name, run_id = trial-NNNN, results = --results)")
    if name not in cfgmod.keys():
        raise BenchError(f"{where} parameter '{name}' is not a bench run config key; "
                         f"known keys: {', '.join(cfgmod.keys())}")


def _coerce(name: str, value: Any, where: str) -> Any:
    try:
        value = cfgmod.coerce(name, value)
    except BenchError as exc:
        raise BenchError(f"{where} {exc}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise BenchError(f"{where} config key '{name}': {value!r} must be a finite number")
    return value


def _parameter(name: str, body: dict[str, Any], where: str) -> Param | tuple[Any]:
    """A Param for a swept parameter, or a 1-tuple holding a fixed value."""
    dist = body.get("distribution")
    if dist is not None and dist not in DISTRIBUTIONS:
        raise BenchError(f"{where} parameter '{name}': distribution {short(dist)} is not "
                         "supported; "
                         f"use one of {', '.join(DISTRIBUTIONS)}")
    shapes = [k for k in ("value", "values", "min") if k in body]
    if "max" in body and "min" not in body:
        shapes.append("max")
    if len(shapes) != 1:
        raise BenchError(f"{where} parameter '{name}' needs exactly one of value, values or "
                         f"min/max, got {', '.join(shapes) or 'none'}")
    shape = shapes[0]
    extra = {"value": ("distribution",), "values": ("distribution",),
             "min": ("max", "distribution", "q"), "max": ()}[shape]
    for key in body:
        if key != shape and key not in extra:
            raise BenchError(f"{where} parameter '{name}': '{key}' does not go with '{shape}'")
    if shape == "value":
        if dist not in (None, "constant"):
            raise BenchError(f"{where} parameter '{name}': a value takes distribution constant")
        return (_coerce(name, body["value"], where),)
    if shape == "values":
        return _categorical(name, body["values"], dist, where)
    if shape == "max":
        raise BenchError(f"{where} parameter '{name}': 'max' needs 'min'")
    return _ranged(name, body, dist, where)


def _categorical(name: str, values: Any, dist: str | None, where: str) -> Param:
    if dist not in (None, "categorical"):
        raise BenchError(f"{where} parameter '{name}': values take distribution categorical")
    if not isinstance(values, list) or not values:
        raise BenchError(f"{where} parameter '{name}': 'values' must be a non-empty list")
    if not all(_is_scalar(v) for v in values):
        raise BenchError(f"{where} parameter '{name}': values must be plain scalars, "
                         f"got {short(values)}")
    # types only: a value out of range or an unknown choice fails its own trial, not the sweep
    coerced = tuple(_coerce(name, v, where) for v in values)
    if len(set(map(repr, coerced))) != len(coerced):
        raise BenchError(f"{where} parameter '{name}': values repeat: {short(values)}")
    return Param(name, "categorical", values=coerced)


def _ranged(name: str, body: dict[str, Any], dist: str | None, where: str) -> Param:
    low, high = body.get("min"), body.get("max")
    if "max" not in body:
        raise BenchError(f"{where} parameter '{name}': 'min' needs 'max'")
    if not (_is_number(low) and _is_number(high)):
        raise BenchError(f"{where} parameter '{name}': min and max must be numbers, "
                         f"got {short(low)} and {short(high)}")
    if low > high:
        raise BenchError(f"{where} parameter '{name}': min {low} > max {high}")
    kind = _kind(name)
    if kind not in ("int", "float"):
        raise BenchError(f"{where} parameter '{name}' is a {kind} key: use value or values, "
                         "not min/max")
    if dist is None:  # as W&B: integers -> int_uniform, any float -> uniform
        dist = "int_uniform" if isinstance(low, int) and isinstance(high, int) else "uniform"
    if dist in ("constant", "categorical"):
        raise BenchError(f"{where} parameter '{name}': distribution {dist} takes value/values")
    if dist == "int_uniform" and not (isinstance(low, int) and isinstance(high, int)):
        raise BenchError(f"{where} parameter '{name}': int_uniform needs integer min and max")
    if dist == "uniform" and kind == "int":
        raise BenchError(f"{where} parameter '{name}' is an int key: uniform would give "
                         "fractions; use int_uniform (integer min/max)")
    if dist == "log_uniform_values" and not low > 0:
        raise BenchError(f"{where} parameter '{name}': log_uniform_values needs min > 0")
    q = body.get("q")
    if q is not None and dist != "q_uniform":
        raise BenchError(f"{where} parameter '{name}': 'q' goes with distribution q_uniform")
    if dist == "q_uniform":
        q = 1.0 if q is None else q  # W&B's default
        if not _is_number(q) or not q > 0:
            raise BenchError(f"{where} parameter '{name}': q must be a number > 0, got {short(q)}")
        if kind == "int" and not (float(q).is_integer() and float(low).is_integer()):
            raise BenchError(f"{where} parameter '{name}' is an int key: q_uniform needs "
                             "integer min and q")
    for end in (low, high):
        _coerce(name, end, where)
    return Param(name, dist, low=low, high=high, q=q)


def _apply_sets(fixed: dict[str, Any], params: dict[str, Param], sets: list[str] | None,
                where: str) -> None:
    """--set k=v: a parameter of the file becomes the fixed value; other keys are added."""
    for key, value in cfgmod.parse_sets(sets).items():
        if key in RESERVED:
            raise BenchError(f"--set {key}: set by bench sweep for every trial "
                             "(use --results for the results root)")
        value = cfgmod.coerce(key, value)  # unknown key or wrong type: one line
        params.pop(key, None)
        fixed[key] = value


def _check_config(fixed: dict[str, Any], params: dict[str, Param], where: str) -> None:
    """Fixed values and the ends of every min/max range must make a valid run config."""
    try:
        cfgmod.build_config(fixed)
        for p in params.values():
            if p.distribution != "categorical":
                cfgmod.build_config(fixed, {p.name: p.low})
                cfgmod.build_config(fixed, {p.name: p.high})
    except BenchError as exc:
        raise BenchError(f"{where} {exc}") from None


def _metric(raw: Any, method: str, early: Any, where: str) -> tuple[str, str, float | None]:
    if raw is None:
        if method == "bayes" or early:
            raise BenchError(f"{where} method bayes and early_terminate need a 'metric' "
                             "{name, goal}")
        return schema.TEST_ACC, "maximize", None  # grid/random without a metric: accuracy
    if not isinstance(raw, dict):
        raise BenchError(f"{where} 'metric' must be a mapping {{name, goal}}, got {short(raw)}")
    for key in raw:
        if key not in METRIC_KEYS:
            raise BenchError(f"{where} metric key '{key}' is not supported; "
                             f"allowed: {', '.join(METRIC_KEYS)}")
    allowed = [*SUMMARY_METRICS, *logged_metrics()]
    name = raw.get("name")
    if name not in allowed:
        raise BenchError(f"{where} metric name {short(name)} is not one of {', '.join(allowed)}")
    goal = raw.get("goal", "minimize")  # W&B's default
    if goal not in GOALS:
        raise BenchError(f"{where} metric goal {short(goal)} is not one of {', '.join(GOALS)}")
    target = raw.get("target")
    if target is not None and not _is_number(target):
        raise BenchError(f"{where} metric target must be a number, got {short(target)}")
    return name, goal, target


def _early_terminate(raw: Any, where: str) -> dict[str, Any] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or raw.get("type") != "hyperband":
        raise BenchError(f"{where} early_terminate must be a mapping with type: hyperband")
    for key in raw:
        if key not in HYPERBAND_KEYS:
            raise BenchError(f"{where} early_terminate key '{key}' is not supported; "
                             f"allowed: {', '.join(HYPERBAND_KEYS)}")
    for key in ("min_iter", "max_iter", "s"):
        value = raw.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                  or value < 1):
            raise BenchError(f"{where} early_terminate {key} must be an integer >= 1, "
                             f"got {short(value)}")
    if "min_iter" not in raw and not ("max_iter" in raw and "s" in raw):
        raise BenchError(f"{where} early_terminate needs min_iter, or max_iter with s")
    eta = raw.get("eta", 3)
    if not isinstance(eta, int) or isinstance(eta, bool) or eta < 2:
        # optuna's HyperbandPruner takes an integer reduction factor
        raise BenchError(f"{where} early_terminate eta must be an integer >= 2, got {short(eta)}")
    if "strict" in raw and not isinstance(raw["strict"], bool):
        raise BenchError(f"{where} early_terminate strict must be true or false")
    # `strict` is accepted for W&B files and has no Optuna counterpart: HyperbandPruner always
    # runs successive halving by the book
    return dict(raw)


def _run_cap(raw: Any, method: str, where: str) -> int | None:
    if raw is None:
        return None
    if not isinstance(raw, int) or isinstance(raw, bool) or raw < 1:
        raise BenchError(f"{where} run_cap must be an integer >= 1, got {short(raw)}")
    if raw > MAX_TRIALS:
        raise BenchError(f"{where} run_cap {raw} is over the limit of {MAX_TRIALS} trials")
    return raw


def _bench(data: Mapping[str, Any], where: str) -> dict[str, Any]:
    """bench's own settings: the `bench:` mapping (plus a legacy top-level `baseline:`)."""
    own = data.get("bench") or {}
    if not isinstance(own, dict):
        raise BenchError(f"{where} 'bench' must be a mapping with keys {', '.join(BENCH_KEYS)}")
    for key in own:
        if key not in BENCH_KEYS:
            raise BenchError(f"{where} unknown key 'bench.{key}'; allowed: {', '.join(BENCH_KEYS)}")
    if "baseline" in data:
        if "baseline" in own:
            raise BenchError(f"{where} 'baseline' is given twice (top level and bench.baseline); "
                             "keep bench.baseline")
        own = {**own, "baseline": data["baseline"]}
    return own


def _replicates(raw: Any, method: str, params: dict[str, Param], where: str) -> tuple[str, ...]:
    """bench.replicates: swept keys (e.g. seed) whose values are replicates of one configuration,
    run for every point of the grid and left out of Optuna's searched parameters."""
    if raw is None:
        return ()
    names = [raw] if isinstance(raw, str) else raw
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise BenchError(f"{where} bench.replicates must be a key or a list of keys, e.g. [seed]; "
                         f"got {raw!r}")
    if method != "grid":
        raise BenchError(f"{where} bench.replicates needs method grid (a sampler cannot repeat "
                         f"its point for each replicate); got method {method}")
    for name in names:
        if name not in cfgmod.keys():
            raise BenchError(f"{where} bench.replicates: '{name}' is not a bench run config key")
    # a key fixed by `value:` or --set is one replicate: nothing to repeat
    return tuple(n for n in names if n in params)


def _objectives(raw: Any, early: Any, where: str) -> tuple[tuple[str, str], ...]:
    """bench.objectives: [{name, goal}, ...], two or more summary metrics optimised together
    (Optuna directions: the dashboard shows their Pareto front)."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) < 2 or not all(isinstance(o, dict) for o in raw):
        raise BenchError(f"{where} bench.objectives must be a list of two or more "
                         "{name, goal} mappings, e.g. [{name: test_acc, goal: maximize}, "
                         "{name: energy_uj_per_image, goal: minimize}]")
    if early:
        raise BenchError(f"{where} bench.objectives cannot prune (Optuna prunes single-objective "
                         "studies only): remove early_terminate")
    out = []
    for o in raw:
        extra = sorted(set(o) - {"name", "goal"})
        if extra:
            raise BenchError(f"{where} bench.objectives: unknown key '{extra[0]}'; allowed: name, "
                             "goal")
        name, goal = o.get("name"), o.get("goal", "minimize")
        if name not in SUMMARY_METRICS:
            raise BenchError(f"{where} bench.objectives: name {short(name)} is not one of "
                             f"{', '.join(SUMMARY_METRICS)}")
        if goal not in GOALS:
            raise BenchError(f"{where} bench.objectives: goal {short(goal)} of '{name}' is not "
                             f"one of {', '.join(GOALS)}")
        out.append((name, goal))
    names = [n for n, _ in out]
    twice = [n for i, n in enumerate(names) if n in names[:i]]
    if twice:
        raise BenchError(f"{where} bench.objectives: '{twice[0]}' is given twice")
    return tuple(out)


def _baseline(raw: Any, where: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not raw:
        raise BenchError(f"{where} 'baseline' must be a mapping of config keys, e.g. "
                         "{arch: sew_resnet18}")
    out = {}
    for key, value in raw.items():
        if key not in cfgmod.keys():
            raise BenchError(f"{where} baseline key '{key}' is not a bench run config key")
        out[key] = _coerce(key, value, where)
    return out


def upgrade_fingerprint(stored: dict[str, Any]) -> dict[str, Any]:
    """A study's saved sweep from before `bench:` existed, in today's form (its top-level
    `baseline` moved under `bench`), so that re-running the same file continues it."""
    if "baseline" not in stored:
        return stored
    out = {k: v for k, v in stored.items() if k != "baseline"}
    out["bench"] = {**(out.get("bench") or {}), "baseline": stored["baseline"]}
    return out
