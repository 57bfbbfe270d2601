"""Sweep files: W&B schema -> Optuna mapping, and one-line errors (exit 2) for malformed files."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from bench.cli import main
from bench.errors import BenchError
from bench.sweep.spec import load_spec, parse_spec

SWEEPS = Path(__file__).resolve().parents[1] / "sweeps"


def spec_of(parameters: dict, **top) -> object:
    return parse_spec({"method": "random", "run_cap": 3, "parameters": parameters, **top})


# (parameter body in the sweep file, config key) -> the Optuna distribution it must become
DISTRIBUTIONS = [
    ("T", {"values": [1, 2, 4]}, CategoricalDistribution((1, 2, 4))),
    ("arch", {"values": ["sew_resnet18", "sparse_resnet18"]},
     CategoricalDistribution(("sew_resnet18", "sparse_resnet18"))),
    ("arch", {"distribution": "categorical", "values": ["vgg16"]},
     CategoricalDistribution(("vgg16",))),
    ("learnable_threshold", {"values": [True, False]}, CategoricalDistribution((True, False))),
    ("N", {"min": 1, "max": 8}, IntDistribution(1, 8)),  # integers -> int_uniform
    ("N", {"distribution": "int_uniform", "min": 2, "max": 6}, IntDistribution(2, 6)),
    ("alpha", {"min": 2.0, "max": 5.0}, FloatDistribution(2.0, 5.0)),  # floats -> uniform
    ("alpha", {"min": 2, "max": 5.5}, FloatDistribution(2.0, 5.5)),  # one float -> uniform
    ("alpha", {"distribution": "uniform", "min": 1, "max": 3}, FloatDistribution(1.0, 3.0)),
    ("lr", {"distribution": "log_uniform_values", "min": 1.0e-4, "max": 0.1},
     FloatDistribution(1e-4, 0.1, log=True)),
    ("batch_size", {"distribution": "log_uniform_values", "min": 16, "max": 256},
     IntDistribution(16, 256, log=True)),  # an int key stays an int
    ("momentum", {"distribution": "q_uniform", "min": 0.5, "max": 0.9, "q": 0.1},
     FloatDistribution(0.5, 0.9, step=0.1)),
    ("batch_size", {"distribution": "q_uniform", "min": 32, "max": 128, "q": 32},
     IntDistribution(32, 128, step=32)),
    ("epochs", {"distribution": "q_uniform", "min": 1, "max": 9}, IntDistribution(1, 9, step=1)),
]


@pytest.mark.parametrize("key,body,expected", DISTRIBUTIONS,
                         ids=[f"{k}-{b.get('distribution', 'auto')}" for k, b, _ in DISTRIBUTIONS])
def test_distribution_table(key, body, expected):
    spec = spec_of({key: body, "dataset": {"value": "digits"}})
    assert spec.distributions() == {key: expected}
    assert spec.fixed == {"dataset": "digits"}


def test_value_and_constant_are_fixed_not_swept():
    spec = spec_of({"T": {"value": 2}, "N": {"distribution": "constant", "value": 8},
                    "arch": {"values": ["vgg16", "sew_resnet18"]}})
    assert spec.fixed == {"T": 2, "N": 8}
    assert list(spec.distributions()) == ["arch"]


def test_grid_enumerates_values_int_and_q_ranges_in_file_order():
    spec = parse_spec({"method": "grid", "parameters": {
        "arch": {"values": ["vgg16", "sew_resnet18"]},
        "N": {"min": 1, "max": 3},
        "alpha": {"distribution": "q_uniform", "min": 0.5, "max": 1.0, "q": 0.25}}})
    grid = spec.slots()
    assert len(grid) == 2 * 3 * 3 == spec.run_cap
    assert grid[0] == {"arch": "vgg16", "N": 1, "alpha": 0.5}
    assert grid[-1] == {"arch": "sew_resnet18", "N": 3, "alpha": 1.0}
    assert sorted({p["alpha"] for p in grid}) == [0.5, 0.75, 1.0]
    assert len({tuple(p.values()) for p in grid}) == 18
    capped = parse_spec({"method": "grid", "run_cap": 4,
                         "parameters": {"N": {"values": [1, 2, 4, 8, 16]}}})
    assert capped.slots() == [{"N": 1}, {"N": 2}, {"N": 4}, {"N": 8}]


def test_random_and_bayes_slots_are_run_cap_sampler_trials():
    for method in ("random", "bayes"):
        spec = parse_spec({"method": method, "run_cap": 5, "metric": {"name": "val/acc"},
                           "parameters": {"lr": {"min": 0.01, "max": 0.1}}})
        assert spec.slots() == [{}] * 5


def test_set_overrides_fix_a_swept_parameter_and_add_new_keys():
    spec = load_spec(SWEEPS / "sparse_n.yaml", sets=["dataset=digits", "epochs=2", "N=4"])
    assert spec.fixed["dataset"] == "digits" and spec.fixed["epochs"] == 2 and spec.fixed["N"] == 4
    assert list(spec.params) == ["arch"]
    assert spec.slots() == [{"arch": "sew_resnet18"}, {"arch": "sparse_resnet18"}]
    saved = spec.to_dict()
    assert saved["parameters"]["dataset"] == {"value": "digits"}
    assert saved["parameters"]["arch"] == {"values": ["sew_resnet18", "sparse_resnet18"]}
    assert saved["bench"] == {"baseline": {"arch": "sew_resnet18"}}  # bench's own key
    with_new = load_spec(SWEEPS / "avalanche.yaml", sets=["limit_train_batches=3"])
    assert with_new.fixed["limit_train_batches"] == 3.0


def test_hyperband_maps_onto_optuna_pruner_arguments():
    base = {"method": "bayes", "run_cap": 4, "metric": {"name": "test_acc", "goal": "maximize"},
            "parameters": {"lr": {"min": 0.01, "max": 0.1}, "epochs": {"value": 27}}}
    spec = parse_spec({**base, "early_terminate": {"type": "hyperband", "min_iter": 3, "eta": 3}})
    assert spec.hyperband() == {"min_resource": 3, "max_resource": 27, "reduction_factor": 3}
    assert spec.monitor() == "val/acc"
    # W&B: max_iter with s brackets -> the first band is max_iter / eta**s
    spec = parse_spec({**base, "early_terminate": {"type": "hyperband", "max_iter": 81, "s": 2,
                                                   "eta": 3}})
    assert spec.hyperband() == {"min_resource": 9, "max_resource": 81, "reduction_factor": 3}


@pytest.mark.parametrize("name,size,digits_size", [
    ("avalanche", 6, 6), ("levels", 72, 72), ("energy", 6, 6), ("gradient", 4, 4),
    ("sparse_n", 12, 6), ("dvs", 3, 3), ("dvs_binary", 1, 1), ("depth", 6, 6)])
def test_paper_sweeps_parse_as_they_are_and_on_digits(name, size, digits_size):
    spec = load_spec(SWEEPS / f"{name}.yaml")
    assert spec.name == name and spec.method == "grid" and len(spec.slots()) == size
    quick = load_spec(SWEEPS / f"{name}.yaml", sets=["dataset=digits", "epochs=2"])
    assert len(quick.slots()) == digits_size and quick.fixed["dataset"] == "digits"
    assert "# Reproduces the paper's claims" in (SWEEPS / f"{name}.yaml").read_text().splitlines()[0]


def test_sweeps_folder_holds_exactly_the_paper_sweeps():
    assert sorted(p.stem for p in SWEEPS.glob("*.yaml")) == sorted(
        ["avalanche", "levels", "energy", "gradient", "sparse_n", "dvs", "dvs_binary", "depth"])


GOOD = {"name": "bad", "method": "grid", "metric": {"name": "test_acc", "goal": "maximize"},
        "parameters": {"arch": {"values": ["sew_resnet18"]}, "T": {"value": 1}}}


def with_(**changes) -> dict:
    out = {k: v for k, v in GOOD.items() if changes.get(k, 0) is not None}
    out.update({k: v for k, v in changes.items() if v is not None})
    return out


def param(**params) -> dict:
    return with_(parameters={**GOOD["parameters"], **params})


# (sweep file: a mapping dumped as YAML, or raw text; None = no file) -> words the error names
MALFORMED = {
    "missing_method": (with_(method=None), "'method' is missing"),
    "unknown_method": (with_(method="hyperopt"), "method 'hyperopt' is not one of"),
    "empty_parameters": (with_(parameters={}), "'parameters' must be a non-empty mapping"),
    "unknown_top_key": (with_(scheduler={"engine": "optuna"}), "unknown sweep key 'scheduler'"),
    "unknown_param_key": (param(T={"value": 1, "default": 2}), "unknown key 'default'"),
    "unknown_config_key": (param(depth={"value": 3}), "parameter 'depth' is not a bench run"),
    "bad_distribution": (param(lr={"distribution": "normal", "min": 0.1, "max": 1.0}),
                         "distribution 'normal' is not supported"),
    "min_gt_max": (param(N={"min": 8, "max": 2}), "min 8 > max 2"),
    "min_not_number": (param(lr={"min": "a", "max": 1.0}), "min and max must be numbers"),
    "values_not_list": (param(N={"values": 4}), "'values' must be a non-empty list"),
    "wrong_value_type": (param(T={"value": "one"}), "'T': 'one' is not a valid int"),
    "wrong_values_type": (param(N={"values": [1, "many"]}), "'N': 'many' is not a valid int"),
    "T_zero": (param(T={"value": 0}), "'T': 0 must be an integer from 1 to 256"),
    "N_zero": (param(N={"value": 0}), "'N': 0 must be an integer from 1 to 256"),
    "N_range_from_zero": (param(N={"min": 0, "max": 4}), "'N': 0 must be an integer from 1 to 256"),
    "negative_epochs": (param(epochs={"value": -5}), "'epochs': -5 must be >= 1"),
    "unknown_dataset": (param(dataset={"value": "imagenet"}), "'dataset': 'imagenet' is not a registered data set"),
    "unknown_arch_value": (param(arch={"value": "resnet9000"}), "'arch': 'resnet9000' is not a registered architecture"),
    "uniform_on_int_key": (param(T={"distribution": "uniform", "min": 1, "max": 4}),
                           "int key: uniform"),
    "grid_continuous": (param(lr={"min": 0.01, "max": 0.1}), "cannot enumerate"),
    "random_without_run_cap": (with_(method="random"), "needs 'run_cap'"),
    "bad_goal": (with_(metric={"name": "test_acc", "goal": "up"}), "goal 'up' is not one of"),
    "bad_metric": (with_(metric={"name": "accuracy"}), "metric name 'accuracy' is not one of"),
    "bayes_without_metric": (with_(method="bayes", run_cap=3, metric=None), "need a 'metric'"),
    "hyperband_float_eta": (with_(early_terminate={"type": "hyperband", "min_iter": 1,
                                                   "eta": 2.5}), "eta must be an integer"),
    "hyperband_no_band": (with_(early_terminate={"type": "hyperband"}), "needs min_iter"),
    "reserved_key": (param(study={"value": "x"}), "set by bench sweep"),
    "run_cap_zero": (with_(run_cap=0), "run_cap must be an integer >= 1"),
    "bad_name": (with_(name="../escape"), "name '../escape' must be"),
    "bad_baseline": (with_(baseline={"colour": "red"}), "baseline key 'colour'"),
    "yaml_syntax": ("method: grid\nparameters: {T: {value: 1}\n", "YAML syntax error"),
    "non_mapping_top": ("- method\n- grid\n", "top level must be a mapping"),
    "duplicated_keys": ("method: grid\nmethod: random\nparameters: {T: {value: 1}}\n",
                        "duplicated key 'method'"),
    "file_missing": (None, "config file not found"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_sweep_file_exits_2_with_one_line(case, tmp_path, capsys):
    content, words = MALFORMED[case]
    path = tmp_path / f"{case}.yaml"
    if content is not None:
        path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    results = tmp_path / "results"
    rc = main(["sweep", str(path), "--results", str(results)])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.count("\n") == 1 and err.startswith("bench sweep: error: "), err
    assert words in err, err
    assert "Traceback" not in err
    assert not list(results.rglob("optuna.journal")), "no study before the file is valid"


def test_bad_set_override_exits_2(tmp_path, capsys):
    rc = main(["sweep", str(SWEEPS / "avalanche.yaml"), "--set", "T=zero",
               "--results", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "'T': 'zero' is not a valid int" in err and err.count("\n") == 1
    with pytest.raises(BenchError, match="unknown config key 'colour'"):
        load_spec(SWEEPS / "avalanche.yaml", sets=["colour=red"])
