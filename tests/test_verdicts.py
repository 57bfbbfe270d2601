"""Verdicts from the 95 % interval over seeds (bench.report.verdicts), the bold best of a table,
the best configuration by its mean (bench status), the energy sensitivity matrix, the accuracy
vs energy figure and multi-objective sweeps, on crafted numbers checked by hand."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pandas as pd
import pytest
import scipy.stats
from optuna.distributions import CategoricalDistribution

from bench.errors import BenchError
from bench.report import tradeoff
from bench.report.figures import build_figures
from bench.report.tables import summary_table
from bench.report.verdicts import _half_width, direction, effect, judge, seeds_needed, size
from bench.sweep.attrs import BEST_ATTR, best_configuration, record_best
from bench.sweep.spec import parse_spec
from bench.sweep.status import best_text, front_text, table
from test_figures import claim, scaled_pricing
from test_report import new_parts, write_record, write_sweep

ENERGY_CLAIM = "energy change, Sparse-ResNet18 vs SEW-ResNet18 (%)"


def pair_study(results, sew_uj, sparse_uj, sew_acc=(0.90, 0.90, 0.90),
               sparse_acc=(0.90, 0.90, 0.90)) -> None:
    """An avalanche study: SEW vs Sparse-ResNet18, one run per seed, the given energies."""
    study = results / "avalanche"
    write_sweep(study, {"arch": {"values": ["sew_resnet18", "sparse_resnet18"]},
                        "seed": {"values": list(range(len(sew_uj)))}})
    for arch, uj, acc in (("sew_resnet18", sew_uj, sew_acc),
                          ("sparse_resnet18", sparse_uj, sparse_acc)):
        for s, (e, a) in enumerate(zip(uj, acc)):
            write_record(study, f"{arch}-s{s}", arch=arch, seed=s, test_acc=a,
                         energy=new_parts(e), spikes={"sum0": 10.0, "sum1": e})


def claims_of(tmp_path, **kw) -> pd.DataFrame:
    build_figures(tmp_path / "results", tmp_path / "paper", paper=False, **kw)
    return pd.read_csv(tmp_path / "paper" / "claims.csv", keep_default_na=False)


# ----------------------------------------------------------------------------- verdicts

def test_a_one_percent_energy_drop_holds_in_direction_and_fails_in_size(tmp_path):
    # per seed Sparse / SEW = 0.99, 0.98902, 0.99098: paired log ratios, mean -1.00 %,
    # interval [-1.24, -0.76] %: below 0, and nowhere near the paper's 25-30 % lower
    pair_study(tmp_path / "results", (1000, 1002, 998), (990, 991, 989))
    energy = claim(claims_of(tmp_path), ENERGY_CLAIM)
    assert energy["direction"] == "holds" and energy["size"] == "fails"
    assert energy["ours"] == pytest.approx(100 * (990 - 1000) / 1000)
    assert "95 % interval [-1.24, -0.76] % over 3 + 3 seeds (paired by seed" in energy["evidence"]
    assert energy["accuracy"] == "Sparse-ResNet18 90.00 ± 0.00 %; SEW-ResNet18 90.00 ± 0.00 %"
    md = (tmp_path / "paper" / "claims.md").read_text()
    assert "accuracy of the groups" in md and "**fails**" in md


def test_overlapping_groups_are_inconclusive_on_both(tmp_path):
    # Sparse / SEW per seed 0.9, 0.467, 1.571: the log-ratio interval is [-80.8, +294] %,
    # across 0 and across the paper's range
    pair_study(tmp_path / "results", (1000, 1500, 700), (900, 700, 1100),
               sew_acc=(0.85, 0.95, 0.80), sparse_acc=(0.90, 0.80, 0.95))
    claims = claims_of(tmp_path)
    energy = claim(claims, ENERGY_CLAIM)
    assert energy["direction"] == "inconclusive" and energy["size"] == "inconclusive"
    assert "direction: about 77 seeds per group would decide it" in energy["evidence"]
    assert "size: about 67 seeds per group would decide it" in energy["evidence"]
    acc = claim(claims, "accuracy difference, Sparse-ResNet18 vs SEW-ResNet18 (pp)")
    assert acc["size"] == "inconclusive" and acc["direction"] == "n/a"


def test_single_runs_are_inconclusive():
    eff = effect([990.0], [1000.0], "change")
    assert eff.estimate == pytest.approx(-1.0) and not eff.ok
    d, s, text = judge(eff, "<", -30.0, -25.0)
    assert (d, s) == ("inconclusive", "inconclusive")
    assert "1 + 1 runs: no seed spread" in text and "at least 2 runs per group" in text


def test_welch_when_seeds_do_not_pair():
    a, b = [90.0, 92.0, 94.0], [91.0, 92.0, 93.0, 95.0]
    eff = effect(a, b, "difference", [0, 1, 2], [0, 1, 2, 3])  # other seeds: independent
    ci = scipy.stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert not eff.paired and eff.interval == pytest.approx((ci.low, ci.high))
    assert eff.estimate == pytest.approx(92.0 - 92.75)
    paired = effect(a, [91.0, 92.0, 93.0], "difference", [2, 0, 1], [0, 1, 2])
    # pairs by seed: (94, 91), (90, 92), (92, 93) -> differences 3, -2, -1
    ci = scipy.stats.ttest_rel([90.0, 92.0, 94.0], [92.0, 93.0, 91.0]).confidence_interval(0.95)
    assert paired.paired and paired.interval == pytest.approx((ci.low, ci.high))


def test_size_bounds_and_points():
    ratio = effect([500.0, 510.0, 490.0], [200.0, 200.0, 200.0], "ratio")  # about 2.5x
    assert size(ratio, 2.0, 3.0) == "holds" and direction(ratio, ">") == "holds"
    assert direction(ratio, "<") == "fails"
    assert size(ratio, 3.0, 4.0) == "fails"
    assert size(ratio, 2.5, 2.5) == "inconclusive"  # a point: missed or not, never confirmed
    assert size(ratio, 1.0, 1.0) == "fails"
    more = effect([60.0, 61.0, 59.0], [100.0, 100.0, 100.0], "change")  # -40 %
    assert size(more, None, -20.0) == "holds"  # "more than 20 % less"
    assert size(more, None, -45.0) == "fails"


def test_seeds_needed_is_the_smallest_n_whose_half_width_clears_the_boundary():
    eff = effect([1.0, 2.0, 3.0, 2.0], [1.0, 1.0, 3.0, 1.0], "difference")  # Welch, sds 0.82, 1
    assert eff.center == pytest.approx(0.5) and direction(eff, ">") == "inconclusive"
    n = seeds_needed(eff, [0.0])
    d = abs(eff.center)
    assert _half_width(eff.sds, n) < d <= _half_width(eff.sds, n - 1)
    # by hand for the paired case: t(n-1) * 1 / sqrt(n) < 0.5 first at n = 18
    assert all(scipy.stats.t.ppf(0.975, k - 1) / math.sqrt(k) >= 0.5 for k in range(2, 18))
    assert scipy.stats.t.ppf(0.975, 17) / math.sqrt(18) < 0.5
    on_zero = effect([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], "difference")
    assert seeds_needed(on_zero, [0.0]) is None  # the mean sits on the boundary


# ----------------------------------------------------------------------------- tables

def _agg(rows: list[tuple[str, float, float, int]]) -> pd.DataFrame:
    out = []
    for arch, acc, std, n in rows:
        out.append({"arch": arch, "runs": n, "test_acc_pct_mean": acc, "test_acc_pct_std": std,
                    "spikes_total_per_image_mean": np.nan, "spikes_total_per_image_std": np.nan,
                    "energy_uj_per_image_mean": np.nan, "energy_uj_per_image_std": np.nan})
    return pd.DataFrame(out)


@pytest.mark.parametrize("rows, bold", [
    # 95 +- 1 vs 90 +- 1 over 3 seeds: Welch p = 0.002, separated
    ([("a", 90.0, 1.0, 3), ("b", 95.0, 1.0, 3)], [False, True]),
    # 91 +- 3 vs 90 +- 3: p = 0.70, seed noise could reverse it
    ([("a", 90.0, 3.0, 3), ("b", 91.0, 3.0, 3)], [False, False]),
    # one run each: no spread, no best
    ([("a", 90.0, np.nan, 1), ("b", 95.0, np.nan, 1)], [False, False]),
    # separated from the runner-up (93 +- 1), the third far behind
    ([("a", 80.0, 1.0, 3), ("b", 98.0, 0.5, 3), ("c", 93.0, 1.0, 3)], [False, True, False]),
])
def test_bold_only_when_the_interval_separates_the_best(rows, bold):
    table = summary_table(_agg(rows), ["arch"], n_runs=6)
    assert list(table.bold["accuracy (%)"]) == bold
    assert "separates it from the runner-up" in table.sentence


# ----------------------------------------------------------------------------- best by mean

def _study(values: dict[str, list[float]]) -> tuple[optuna.Study, dict]:
    """An in-memory study: each arch run once per seed with the given test_acc."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    dist = {"arch": CategoricalDistribution(tuple(values))}
    for arch, accs in values.items():
        for seed, acc in enumerate(accs):
            study.add_trial(optuna.trial.create_trial(
                params={"arch": arch}, distributions=dist, value=acc,
                user_attrs={"seed": seed}))
    spec = {"metric": {"name": "test_acc", "goal": "maximize"}, "bench": {"replicates": ["seed"]},
            "parameters": {"arch": {"values": list(values)}, "seed": {"values": [0, 1, 2]}}}
    return study, spec


def test_the_best_configuration_is_the_best_mean_not_the_luckiest_seed():
    # lucky: one seed at 0.95 (the best trial) but mean 0.7233; steady: mean 0.80
    study, spec = _study({"lucky": [0.95, 0.60, 0.62], "steady": [0.80, 0.81, 0.79]})
    assert study.best_trial.params["arch"] == "lucky"  # optuna's best: one trial
    best = best_configuration(study.trials, spec)
    assert best["params"] == {"arch": "steady"} and best["n"] == 3
    assert best["mean"] == pytest.approx(0.80) and best["std"] == pytest.approx(0.01)
    assert best["trials"] == [3, 4, 5]
    text = best_text(study.trials, spec)
    assert text.startswith("best configuration by its mean over 3 replicates: arch=steady, "
                           "test_acc 0.8 ± 0.01")
    record_best(study, spec)
    assert study.user_attrs[BEST_ATTR]["params"] == {"arch": "steady"}


# ----------------------------------------------------------------------------- sensitivity

def test_sensitivity_matrix_names_the_settings_where_every_energy_claim_holds(tmp_path):
    pair_study(tmp_path / "results", (1000, 1002, 998), (990, 991, 989))
    # "event": as recorded (-1 %); "packet": Sparse runs priced x0.73 -> -27.7 %, inside 25-30 %
    claims_of(tmp_path, pricing=scaled_pricing())
    cells = pd.read_csv(tmp_path / "paper" / "sensitivity.csv").set_index("setting")
    assert cells.loc["event", "direction"] == "holds" and cells.loc["event", "size"] == "fails"
    assert cells.loc["packet", "ours"] == pytest.approx(100 * (990 * 0.73 - 1000) / 1000)
    assert cells.loc["packet", "size"] == "holds"
    assert cells.loc["packet", "low"] == pytest.approx(-27.91, abs=0.01)
    index = (tmp_path / "paper" / "index.md").read_text()
    assert ("Settings under which all 1 energy claims hold at once on these runs (direction, "
            "and size where the paper gives a range): packet.") in index


def test_records_that_cannot_be_repriced_leave_the_matrix_out(tmp_path):
    pair_study(tmp_path / "results", (1000, 1002, 998), (990, 991, 989))

    def no_counts(run, overrides):
        raise KeyError("measured")  # an old record: no counts kept

    pricing = scaled_pricing()
    claims = claims_of(tmp_path, pricing=type(pricing)(pricing.grid, no_counts))
    assert claim(claims, ENERGY_CLAIM)["size"] == "fails"  # the claims are still judged
    index = (tmp_path / "paper" / "index.md").read_text()
    assert "No sensitivity matrix: run avalanche/" in index and "keeps no counts" in index
    assert not (tmp_path / "paper" / "sensitivity.csv").exists()


# ----------------------------------------------------------------------------- tradeoff

def test_pareto_front_of_configuration_means():
    energy = np.array([100.0, 200.0, 150.0, 300.0, 120.0])
    acc = np.array([80.0, 92.0, 79.0, 92.0, 85.0])
    # 150 uJ at 79 % is beaten by 100 uJ at 80 %; 300 uJ at 92 % by 200 uJ at 92 %
    assert list(tradeoff.pareto(energy, acc)) == [0, 4, 1]


def test_tradeoff_figure_marks_categories_and_the_front(tmp_path):
    pair_study(tmp_path / "results", (1000, 1002, 998), (990, 991, 989),
               sparse_acc=(0.80, 0.81, 0.79))
    from bench.report.load import load_records
    from bench.report import prepare

    prep = prepare(load_records([tmp_path / "results" / "avalanche"]))
    fig = tradeoff.tradeoff_figure(prep.agg)
    ax = fig.axes[0]
    gids = {ln.get_gid(): ln for ln in ax.get_lines() if ln.get_gid()}
    assert {"config:SEW-ResNet18", "config:Sparse-ResNet18", "pareto"} <= set(gids)
    # Sparse: 990 uJ at 80 %, SEW: 1000 uJ at 90 %: neither beats the other, both on the front
    x, y = gids["pareto"].get_data()
    assert list(x) == pytest.approx([990.0, 1000.0]) and list(y) == pytest.approx([80.0, 90.0])
    assert gids["config:Sparse-ResNet18"].get_marker() == "^"  # multi-level (N=4 default)


# ----------------------------------------------------------------------------- objectives

SWEEP = {"name": "mo", "method": "grid", "parameters": {"arch": {"values": ["vgg16"]}}}


def test_objectives_make_a_multi_objective_study():
    spec = parse_spec(SWEEP | {"bench": {"objectives": [
        {"name": "test_acc", "goal": "maximize"},
        {"name": "energy_uj_per_image", "goal": "minimize"}]}})
    assert spec.directions == ["maximize", "minimize"]
    assert spec.metric_names == ["test_acc", "energy_uj_per_image"]
    assert spec.to_dict()["bench"]["objectives"][1] == {"name": "energy_uj_per_image",
                                                       "goal": "minimize"}
    single = parse_spec(SWEEP)
    assert single.directions == ["maximize"] and single.metric_names == ["test_acc"]


@pytest.mark.parametrize("objectives, message", [
    ([{"name": "test_acc"}], "two or more"),
    ([{"name": "test_acc"}, {"name": "nope"}], "name 'nope' is not one of"),
    ([{"name": "test_acc", "goal": "up"}, {"name": "duration_s"}], "goal 'up'"),
    ([{"name": "test_acc"}, {"name": "test_acc"}], "'test_acc' is given twice"),
])
def test_bad_objectives_are_one_line(objectives, message):
    with pytest.raises(BenchError, match=message):
        parse_spec(SWEEP | {"bench": {"objectives": objectives}})


def test_status_lists_the_pareto_front():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["maximize", "minimize"])
    dist = {"arch": CategoricalDistribution(("a", "b", "c"))}
    for arch, acc, uj in (("a", 0.90, 100.0), ("b", 0.95, 300.0), ("c", 0.85, 200.0)):
        study.add_trial(optuna.trial.create_trial(params={"arch": arch}, distributions=dist,
                                                  values=[acc, uj]))
    spec = {"metric": {"name": "test_acc", "goal": "maximize"},
            "parameters": {"arch": {"values": ["a", "b", "c"]}},
            "bench": {"objectives": [{"name": "test_acc", "goal": "maximize"},
                                     {"name": "energy_uj_per_image", "goal": "minimize"}]}}
    text = front_text(study.best_trials, spec)  # c: less accurate and dearer than a
    assert text.startswith("Pareto front (2 trials, study.best_trials):")
    lines = [ln for ln in text.splitlines() if ln.startswith("|") and "trial" not in ln
             and "---" not in ln]
    assert [ln.split("|")[2].strip() for ln in lines] == ["a", "b"]
    assert "energy_uj_per_image (minimize)" in text
    assert best_configuration(study.trials, spec) is None  # no single best
    assert "energy_uj_per_image" in table(study.trials, spec)
    assert front_text([], {"metric": {"name": "test_acc"}}) is None
