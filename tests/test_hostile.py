"""Hostile and faulty input across the verbs: each is one line on stderr naming the key or
file, exit 2, no traceback, nothing already on disk changed, and bounded memory for inputs
that could expand (YAML aliases, huge grids). Run in-process through bench.cli.main."""

from __future__ import annotations

import json
import os
import tracemalloc
from pathlib import Path

import pytest
import yaml

from bench.cli import main

LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
    for p, c in zip("abcdefgh", "bcdefghi"))  # ~600 bytes, 9^9 strings once expanded
GOOD_SWEEP = {"name": "ok", "method": "grid", "metric": {"name": "test_acc", "goal": "maximize"},
              "parameters": {"seed": {"values": [0, 1]}, "dataset": {"value": "digits"}}}
SUMMARY = {"status": "completed", "error": None, "run_id": "r", "study": "s", "trial": None,
           "test_acc": 0.5, "config": {"arch": "sew_resnet18", "seed": 0, "T": 1, "N": 4}}


def sweep_text(**changes) -> str:
    return yaml.safe_dump({**GOOD_SWEEP, **changes})


def param_sweep(**params) -> str:
    return sweep_text(parameters={**GOOD_SWEEP["parameters"], **params})


def build(t: Path) -> None:
    """The files the cases point at (small; each case gets a fresh folder)."""
    (t / "afile").write_text("just a file\n")
    (t / "adir").mkdir()
    (t / "random.bin").write_bytes(os.urandom(4096))
    (t / "latin1.yaml").write_bytes(b"epochs: 2\narch: caf\xe9\n")
    (t / "laughs.yaml").write_text(LAUGHS)
    (t / "syntax.yaml").write_text("T: [1, 2\nN: 4\n")
    (t / "list.yaml").write_text("- T\n- 4\n")
    (t / "deep.yaml").write_text("T: " + "[" * 1000 + "]" * 1000 + "\n")
    (t / "tag.yaml").write_text("T: !!python/object/apply:os.system ['echo hi']\n")
    (t / "notext.yaml").write_text("seed: 1\n")
    (t / "plain.txt").write_text("not a journal\n")
    (t / "garbage.ckpt").write_bytes(os.urandom(2048))
    (t / "text.ckpt").write_text("not a checkpoint\n")
    # plugins: one that must never run (it would leave a file), one exiting, one interrupting
    (t / "evil.py").write_text(f"open({str(t / 'ran.txt')!r}, 'w').write('ran')\n")
    (t / "exit3.py").write_text("import sys\nsys.exit(3)\n")
    (t / "ctrl_c.py").write_text("raise KeyboardInterrupt\n")
    recorded = {"arch": "sew_resnet18", "plugins": [str(t / "evil.py")]}
    import torch

    torch.save({"hyper_parameters": {"config": recorded, "num_classes": 10, "in_channels": 1},
                "state_dict": {}}, t / "plugged.ckpt")
    plugged = t / "results" / "plugged" / "runs" / "r1"
    plugged.mkdir(parents=True)
    (plugged / "config.json").write_text(json.dumps(recorded))
    (plugged / "last.ckpt").write_bytes(b"")
    sweeps = {
        "s_random": None, "s_latin1": None,
        "s_laughs_values": LAUGHS + "name: x\nmethod: grid\nparameters: {seed: {values: *i}}\n",
        "s_laughs_descr": LAUGHS + "name: x\nmethod: grid\ndescription: *i\n"
                                   "parameters: {seed: {values: [0]}}\n",
        "s_longname": sweep_text(name="n" * 300),
        "s_dotname": sweep_text(name=".."),
        "s_huge_grid": param_sweep(seed={"min": 0, "max": 200000000}),
        "s_huge_runcap": sweep_text(method="random", run_cap=1000000000,
                                    parameters={"lr": {"min": 0.01, "max": 0.1}}),
        "s_nan_values": param_sweep(lr={"values": [0.1, float("nan")]}),
        "s_inf_value": param_sweep(momentum={"value": float("inf")}),
        "s_tag": "name: x\nmethod: !!python/name:os.system\nparameters: {seed: {values: [0]}}\n",
        "s_alias_key": "name: x\nmethod: grid\nparameters: {seed: &v {values: [0]}, N: *v}\n",
        "s_ok": sweep_text(),
        "s_tpu": param_sweep(accelerator={"value": "tpu"}),
        "s_bigseed": param_sweep(seed={"value": 99999999999999999999}),
        "s_N_null": param_sweep(N={"value": None}),
        "s_N_empty": param_sweep(N={"value": ""}),
        "s_name_newline": sweep_text(name="abc\n"),
        "s_project_newline": sweep_text(project="p\n"),
        "s_fresh": sweep_text(name="fresh"),
        "s_limit_no_batch": param_sweep(limit_val_batches={"value": 0.001}),
        "s_limit_over_one": param_sweep(limit_train_batches={"values": [0.5, 2.0]}),
    }
    for name, text in sweeps.items():
        if text is not None:
            (t / f"{name}.yaml").write_text(text)
    (t / "s_random.yaml").write_bytes(os.urandom(4096))
    (t / "s_latin1.yaml").write_bytes(sweep_text().encode() + b"description: \xff\xfe\n")
    # a results root with a sweep folder whose files are damaged
    for study, files in {
        "binsweep": {"sweep.yaml": os.urandom(2048), "optuna.journal": b""},
        "listsweep": {"sweep.yaml": b"- a\n- b\n", "optuna.journal": b""},
        "binjournal": {"optuna.journal": os.urandom(4096)},
        "jsonjournal": {"optuna.journal": b"[1, 2]\n{}\n\"x\"\n"},
        "nojournal": {},
        "ok": {"sweep.yaml": sweep_text().encode()},
    }.items():
        folder = t / "results" / study
        folder.mkdir(parents=True)
        for name, data in files.items():
            (folder / name).write_bytes(data)
    (t / "results" / "ok" / "ok.journal").write_bytes(b"")
    # study folders whose run records are damaged (each beside a good record)
    damaged = {"cfgstr": {**SUMMARY, "config": "arch=vgg16"},
               "cfglist": {**SUMMARY, "config": ["arch", "vgg16"]},
               "toplist": [SUMMARY], "accstr": {**SUMMARY, "test_acc": "high"},
               "energylist": {**SUMMARY, "energy": [1, 2]},
               "spikesstr": {**SUMMARY, "spikes_per_image": "many"},
               "statusdict": {**SUMMARY, "status": {"done": True}},
               "nstr": {**SUMMARY, "config": {**SUMMARY["config"], "N": "a"}}}
    for study, summary in damaged.items():
        _record(t / "reports_in" / study / "runs" / "good", SUMMARY)
        _record(t / "reports_in" / study / "runs" / "bad", summary)
    _record(t / "reports_in" / "binary" / "runs" / "good", SUMMARY)
    (t / "reports_in" / "binary" / "runs" / "bad").mkdir()
    (t / "reports_in" / "binary" / "runs" / "bad" / "summary.json").write_bytes(os.urandom(512))
    _record(t / "reports_in" / "deepjson" / "runs" / "bad", None)
    (t / "reports_in" / "deepjson" / "runs" / "bad" / "summary.json").write_text(
        "[" * 100000 + "]" * 100000)
    _record(t / "reports_in" / "binsweep" / "runs" / "good", SUMMARY)
    _record(t / "reports_in" / "good" / "runs" / "good", SUMMARY)
    (t / "reports_in" / "binsweep" / "sweep.yaml").write_bytes(os.urandom(1024))
    _record(t / "figs" / "levels" / "runs" / "bad", {**SUMMARY, "config": "x"})
    _record(t / "figs_nstr" / "levels" / "runs" / "bad",
            {**SUMMARY, "config": {**SUMMARY["config"], "T": "a"}})
    _record(t / "reports_in" / "paramlist" / "runs" / "good", SUMMARY)
    (t / "reports_in" / "paramlist" / "sweep.yaml").write_text(
        sweep_text(parameters=["seed", "N"]))
    # a finished sweep trial's record that a run must not overwrite
    _record(t / "results" / "done" / "runs" / "trial-0000", SUMMARY)


def _record(folder: Path, summary) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if summary is not None:
        (folder / "summary.json").write_text(json.dumps(summary))


R = ["--results", "{t}/results"]
# id -> (argv with {t} = the case's folder, words the error line must contain)
CASES = {
    # bench run: --set values
    "run_set_open_bracket": (["run", "--set", "N=[", *R], "'N'"),
    "run_set_alias": (["run", "--set", "lr=*a", *R], "'lr'"),
    "run_set_anchor": (["run", "--set", "T=&a 1", *R], "'T'"),
    "run_set_lr_inf": (["run", "--set", "lr=inf", *R], "'lr': inf must be a finite"),
    "run_set_lr_dotinf": (["run", "--set", "lr=.inf", *R], "'lr': inf must be a finite"),
    "run_set_lr_overflow": (["run", "--set", "lr=1e999", *R], "'lr': inf must be a finite"),
    "run_set_momentum_nan": (["run", "--set", "momentum=nan", *R], "'momentum': nan"),
    "run_set_alpha_nan": (["run", "--set", "alpha=nan", *R], "'alpha': nan"),
    "run_set_threshold_nan": (["run", "--set", "threshold=.nan", *R], "'threshold'"),
    "run_set_wd_inf": (["run", "--set", "weight_decay=inf", *R], "'weight_decay': inf"),
    "run_set_limit_inf": (["run", "--set", "limit_train_batches=inf", *R],
                          "'limit_train_batches': inf"),
    "run_set_huge_seed": (["run", "--set", "seed=99999999999999999999", *R],
                          "'seed': 99999999999999999999 is over the maximum 4294967295"),
    "run_set_negative_seed": (["run", "--set", "seed=-1", *R], "'seed': -1 must be >= 0"),
    "run_set_tpu": (["run", "--set", "accelerator=tpu", *R], "'accelerator': 'tpu' is not one"),
    "run_set_T_huge": (["run", "--set", "T=10000", *R], "'T': 10000 must be an integer from 1 to 256"),
    "run_set_N_huge": (["run", "--set", "N=100000", *R], "'N': 100000 must be an integer from 1 to 256"),
    "run_set_image_huge": (["run", "--set", "image_size=4096", *R], "'image_size': 4096"),
    "run_set_batch_huge": (["run", "--set", "batch_size=10000000", *R], "'batch_size'"),
    "run_set_epochs_overflow": (["run", "--set", "epochs=1e400", *R], "'epochs'"),
    "run_set_T_list": (["run", "--set", "T=[1, 2]", *R], "'T': [1, 2] is not a valid int"),
    "run_set_no_key": (["run", "--set", "=3", *R], "--set expects key=value"),
    "run_set_unknown_key": (["run", "--set", "colour=red", *R], "unknown config key 'colour'"),
    "run_set_wandb_mode": (["run", "--set", "wandb=sometimes", *R], "'wandb'"),
    # bench run: names that would leave results/ or overwrite another record
    "run_study_up": (["run", "--set", "study=../../x", *R], "'study': '../../x' must be"),
    "run_study_abs": (["run", "--set", "study=/abs/path", *R], "'study': '/abs/path' must be"),
    "run_study_dotdot": (["run", "--set", "study=..", *R], "'study': '..' must be"),
    "run_study_300": (["run", "--set", "study=" + "s" * 300, *R], "'study'"),
    "run_study_newline": (["run", "--set", "study=a\nb", *R], "'study'"),
    "run_id_up": (["run", "--set", "run_id=../../x", *R], "'run_id': '../../x' must be"),
    "run_id_slash": (["run", "--set", "run_id=a/b", *R], "'run_id': 'a/b' must be"),
    "run_id_hidden": (["run", "--set", "run_id=.hidden", *R], "'run_id'"),
    "run_overwrites_trial": (["run", "--set", "study=done", "--set", "run_id=trial-0000", *R],
                             "already exists"),
    # bench run: config files
    "run_config_urandom": (["run", "--config", "{t}/random.bin", *R], "random.bin"),
    "run_config_latin1": (["run", "--config", "{t}/latin1.yaml", *R], "not UTF-8"),
    "run_config_laughs": (["run", "--config", "{t}/laughs.yaml", *R], "aliases"),
    "run_config_syntax": (["run", "--config", "{t}/syntax.yaml", *R], "YAML syntax error"),
    "run_config_list": (["run", "--config", "{t}/list.yaml", *R], "top level must be a mapping"),
    "run_config_deep": (["run", "--config", "{t}/deep.yaml", *R], "nested deeper than"),
    "run_config_tag": (["run", "--config", "{t}/tag.yaml", *R], "tag.yaml"),
    "run_config_folder": (["run", "--config", "{t}/adir", *R], "config file not found"),
    "run_config_huge": (["run", "--config", "{t}/huge.yaml", *R], "byte limit"),
    "run_results_file": (["run", "--config", "{t}/notext.yaml", "--results", "{t}/afile"],
                         "'results': {t}/afile is a file"),
    "run_data_root_file": (["run", "--set", "data_root={t}/afile", *R], "'data_root'"),
    # bench sweep
    "sweep_urandom": (["sweep", "{t}/s_random.yaml", *R], "s_random.yaml"),
    "sweep_latin1": (["sweep", "{t}/s_latin1.yaml", *R], "not UTF-8"),
    "sweep_laughs_values": (["sweep", "{t}/s_laughs_values.yaml", *R], "aliases"),
    "sweep_laughs_description": (["sweep", "{t}/s_laughs_descr.yaml", *R], "aliases"),
    "sweep_alias_param": (["sweep", "{t}/s_alias_key.yaml", *R], "aliases"),
    "sweep_tag": (["sweep", "{t}/s_tag.yaml", *R], "s_tag.yaml"),
    "sweep_name_300": (["sweep", "{t}/s_longname.yaml", *R], "name 'nnnnn"),
    "sweep_name_dotdot": (["sweep", "{t}/s_dotname.yaml", *R], "name '..' must be"),
    "sweep_huge_grid": (["sweep", "{t}/s_huge_grid.yaml", *R],
                        "200000001 points, over the limit"),
    "sweep_huge_run_cap": (["sweep", "{t}/s_huge_runcap.yaml", *R],
                           "run_cap 1000000000 is over the limit"),
    "sweep_nan_value": (["sweep", "{t}/s_nan_values.yaml", *R], "'lr': nan must be a finite"),
    "sweep_inf_value": (["sweep", "{t}/s_inf_value.yaml", *R], "'momentum': inf"),
    "sweep_tpu": (["sweep", "{t}/s_tpu.yaml", *R], "'accelerator': 'tpu'"),
    "sweep_big_seed": (["sweep", "{t}/s_bigseed.yaml", *R], "'seed'"),
    "sweep_set_bracket": (["sweep", "{t}/s_ok.yaml", "--set", "N=[", *R], "'N'"),
    "sweep_set_inf": (["sweep", "{t}/s_ok.yaml", "--set", "lr=inf", *R], "'lr': inf"),
    "sweep_storage_dir": (["sweep", "{t}/s_ok.yaml", "--storage", "{t}/adir", *R],
                          "{t}/adir is a folder"),
    "sweep_storage_foreign": (["sweep", "{t}/s_ok.yaml", "--storage", "{t}/plain.txt", *R],
                              "plain.txt is not an Optuna journal"),
    "sweep_storage_new_txt": (["sweep", "{t}/s_ok.yaml", "--storage", "{t}/new.txt", *R],
                              "must end in .journal"),
    "sweep_storage_under_file": (["sweep", "{t}/s_ok.yaml", "--storage",
                                  "{t}/afile/x.journal", *R], "is a file, not a folder"),
    "sweep_results_file": (["sweep", "{t}/s_ok.yaml", "--results", "{t}/afile"],
                           "--results {t}/afile is a file"),
    "sweep_study_is_file": (["sweep", "{t}/s_ok.yaml", "--results", "{t}/res2"],
                            "{t}/res2/ok is a file"),
    "sweep_binary_journal": (["sweep", "{t}/s_ok.yaml", "--storage",
                              "{t}/results/binjournal/optuna.journal", *R],
                             "is not an Optuna journal"),
    "sweep_workers_zero": (["sweep", "{t}/s_ok.yaml", "--workers", "0", *R], "--workers"),
    "sweep_workers_huge": (["sweep", "{t}/s_ok.yaml", "--workers", "100000", *R], "--workers"),
    "sweep_workers_text": (["sweep", "{t}/s_ok.yaml", "--workers", "two", *R], "--workers"),
    "sweep_file_folder": (["sweep", "{t}/adir", *R], "config file not found"),
    # bench status
    "status_file": (["status", "{t}/afile"], "no sweep folder"),
    "status_binary_sweep_yaml": (["status", "{t}/results/binsweep"], "sweep.yaml"),
    "status_list_sweep_yaml": (["status", "{t}/results/listsweep"], "sweep.yaml"),
    "status_binary_journal": (["status", "{t}/results/binjournal"], "optuna.journal"),
    "status_json_journal": (["status", "{t}/results/jsonjournal"], "optuna.journal"),
    "status_no_journal": (["status", "{t}/results/nojournal"], "no sweep journal"),
    "status_storage_dir": (["status", "{t}/results/ok", "--storage", "{t}/adir"],
                           "is a folder"),
    "status_storage_foreign": (["status", "{t}/results/ok", "--storage", "{t}/plain.txt"],
                               "not an Optuna journal"),
    "status_other_study": (["status", "{t}/results/ok", "--storage",
                            "{t}/results/ok/ok.journal"], "no sweep named 'ok'"),
    # bench report
    "report_config_string": (["report", "{t}/reports_in/cfgstr", "--out", "{t}/o"],
                             "bad/summary.json: damaged run record (config"),
    "report_config_list": (["report", "{t}/reports_in/cfglist", "--out", "{t}/o"],
                           "bad/summary.json: damaged"),
    "report_summary_list": (["report", "{t}/reports_in/toplist", "--out", "{t}/o"],
                            "not a JSON object"),
    "report_acc_string": (["report", "{t}/reports_in/accstr", "--out", "{t}/o"], "test_acc"),
    "report_energy_list": (["report", "{t}/reports_in/energylist", "--out", "{t}/o"], "energy"),
    "report_spikes_string": (["report", "{t}/reports_in/spikesstr", "--out", "{t}/o"],
                             "spikes_per_image"),
    "report_status_dict": (["report", "{t}/reports_in/statusdict", "--out", "{t}/o"], "status"),
    "report_binary_summary": (["report", "{t}/reports_in/binary", "--out", "{t}/o"],
                              "not a JSON object"),
    "report_deep_json": (["report", "{t}/reports_in/deepjson", "--out", "{t}/o"],
                         "not a JSON object"),
    "report_binary_sweep_yaml": (["report", "{t}/reports_in/binsweep", "--out", "{t}/o"],
                                 "sweep.yaml: not valid YAML"),
    "report_out_file": (["report", "{t}/reports_in/cfgstr", "--out", "{t}/afile"],
                        "--out {t}/afile is a file"),
    "report_results_file": (["report", "{t}/afile", "--out", "{t}/o"], "no run records"),
    "report_bad_baseline": (["report", "{t}/reports_in/good", "--out", "{t}/o",
                             "--baseline", "arch"], "--baseline expects key=value"),
    # bench figures
    "figures_results_file": (["figures", "--results", "{t}/afile", "--out", "{t}/o"],
                             "--results {t}/afile is a file"),
    "figures_out_file": (["figures", "--results", "{t}/figs", "--out", "{t}/afile"],
                         "--out {t}/afile is a file"),
    "figures_damaged_record": (["figures", "--results", "{t}/figs", "--out", "{t}/o"],
                               "levels/runs/bad/summary.json: damaged"),
    "figures_no_results": (["figures", "--results", "{t}/nothing", "--out", "{t}/o"],
                           "results folder not found"),
    # bench perf (checked before any model or tensor is built)
    "perf_image_4096": (["perf", "--image-size", "4096", "--batch-size", "64"],
                        "--image-size: 4096 is over the maximum"),
    "perf_T_huge": (["perf", "--T", "10000"], "--T: 10000 must be an integer from 1 to 256"),
    "perf_N_huge": (["perf", "--N", "100000"], "--N: 100000 must be an integer from 1 to 256"),
    "perf_batch_pixels": (["perf", "--image-size", "1024", "--batch-size", "64"],
                          "input values is over the maximum"),
    "perf_in_channels": (["perf", "--in-channels", "1000"], "--in-channels: 1000"),
    "perf_batch_zero": (["perf", "--batch-size", "0"], "--batch-size: 0 must be >= 1"),
    # energy settings (bench.energy.EnergySettings is their one check)
    "run_energy_model": (["run", "--set", "energy_model=joules", *R], "'energy_model': 'joules'"),
    "run_energy_counting": (["run", "--set", "energy_counting=spikes", *R],
                            "'energy_counting': 'spikes'"),
    "run_energy_op": (["run", "--set", "energy_multilevel_op=fma", *R], "'energy_multilevel_op'"),
    "run_energy_bits": (["run", "--set", "energy_mem_bits=12", *R], "'energy_mem_bits': 12"),
    "run_energy_sram": (["run", "--set", "energy_sram=dram", *R], "'energy_sram': 'dram'"),
    "run_energy_fifo": (["run", "--set", "energy_fifo=0", *R], "'energy_fifo': 0"),
    # bench eval: what it is pointed at, and its settings
    "eval_missing": (["eval", "{t}/nothing/here"], "not a run folder or a .ckpt file"),
    "eval_plain_file": (["eval", "{t}/afile"], "not a run folder or a .ckpt file"),
    "eval_no_checkpoint": (["eval", "{t}/adir"], "no best.ckpt or last.ckpt"),
    "eval_record_without_ckpt": (["eval", "{t}/results/done/runs/trial-0000"],
                                 "no best.ckpt or last.ckpt"),
    "eval_garbage_ckpt": (["eval", "{t}/garbage.ckpt"], "not a readable bench checkpoint"),
    "eval_text_ckpt": (["eval", "{t}/text.ckpt"], "not a readable bench checkpoint"),
    "eval_bad_split": (["eval", "{t}/adir", "--split", "train"], "--split"),
    "eval_set_syntax": (["eval", "{t}/garbage.ckpt", "--set", "energy_sram"], "key=value"),
    "perf_unknown_model": (["perf", "--models", "resnet9000"], "unknown architecture"),
    "perf_device_tpu": (["perf", "--device", "tpu", "--no-baselines"], "--device: 'tpu'"),
    "perf_batch_text": (["perf", "--batch-size", "lots"], "--batch-size"),
    # values as strict as before: empty and null are no default in disguise
    "run_set_N_empty": (["run", "--set", "N=", *R], "'N': empty"),
    "run_set_lr_empty": (["run", "--set", "lr=", *R], "'lr': empty"),
    "run_set_N_null": (["run", "--set", "N=null", *R], "'N': null is for an ANN"),
    "run_set_T_null": (["run", "--set", "T=~", *R], "'T': null is for an ANN"),
    "run_set_seed_null": (["run", "--set", "seed=null", *R], "'seed': null is not a valid"),
    "run_set_data_root_empty": (["run", "--set", "data_root=", *R], "'data_root': empty"),
    "sweep_N_value_null": (["sweep", "{t}/s_N_null.yaml", *R], "'N': null is for an ANN"),
    "sweep_N_value_empty": (["sweep", "{t}/s_N_empty.yaml", *R], "'N': empty"),
    # names matched whole (a final newline is not a name), project included
    "run_study_final_newline": (["run", "--set", "study=abc\n", *R], "'study': 'abc\\n'"),
    "run_id_final_newline": (["run", "--set", "run_id=abc\n", *R], "'run_id': 'abc\\n'"),
    "run_set_project_slash": (["run", "--set", "project=a/b", *R], "'project': 'a/b' must be"),
    "sweep_name_final_newline": (["sweep", "{t}/s_name_newline.yaml", *R], "name 'abc\\n'"),
    "sweep_project_newline": (["sweep", "{t}/s_project_newline.yaml", *R], "project 'p\\n'"),
    # sizes bounded before anything is allocated
    "run_fake_images_huge": (["run", "--set", "dataset=fake", "--set", "fake_images=2000000000",
                              *R], "'fake_images': 2000000000 is over the maximum 1000000"),
    "run_fake_dvs_bytes": (["run", "--set", "dataset=fake", "--set", "fake_like=cifar10dvs",
                            "--set", "T=64", "--set", "image_size=256", *R],
                           "over the 4 GiB a fake set may take"),
    # batch limits as Lightning reads them, checked against the set's size before training
    "run_limit_share_no_batch": (["run", "--set", "limit_val_batches=0.2", "--set",
                                  "batch_size=256", *R],
                                 "'limit_val_batches': 0.2 of the 1 val batches of digits"),
    "run_limit_float_over_one": (["run", "--set", "limit_train_batches=2.0", *R],
                                 "'limit_train_batches': 2.0 must be a share in (0, 1]"),
    "run_limit_zero": (["run", "--set", "limit_test_batches=0", *R],
                       "'limit_test_batches': 0 must be >= 1"),
    "sweep_limit_no_batch": (["sweep", "{t}/s_limit_no_batch.yaml", *R],
                             "'limit_val_batches': 0.001 of the 4 val batches"),
    # plugins: a record's plugin files never run unless passed again; a plugin's exit is ours
    "eval_recorded_plugin": (["eval", "{t}/plugged.ckpt"],
                             "plugged.ckpt records plugin files {t}/evil.py"),
    "resume_recorded_plugin": (["run", "--resume", "{t}/results/plugged/runs/r1"],
                               "config.json records plugin files {t}/evil.py"),
    "run_trust_without_resume": (["run", "--trust-plugins", *R], "--trust-plugins goes with"),
    "plugin_sys_exit": (["run", "--plugin", "{t}/exit3.py", *R],
                        "plugin {t}/exit3.py, line 2: called sys.exit(3)"),
    "plugin_ctrl_c": (["run", "--plugin", "{t}/ctrl_c.py", *R],
                      "interrupted while importing plugin {t}/ctrl_c.py"),
    # reports: damaged sweep files and fields named; refused sweeps leave no folder
    "report_sweep_parameters_list": (["report", "{t}/reports_in/paramlist", "--out", "{t}/o"],
                                     "sweep.yaml: damaged sweep file ('parameters' is a list"),
    "report_config_number_string": (["report", "{t}/reports_in/nstr", "--out", "{t}/o"],
                                    "bad/summary.json: damaged run record (config.N"),
    "figures_config_number_string": (["figures", "--results", "{t}/figs_nstr", "--out",
                                      "{t}/o"], "damaged run record (config.T"),
    "sweep_new_name_bad_storage": (["sweep", "{t}/s_fresh.yaml", "--storage", "{t}/plain.txt",
                                    *R], "plain.txt is not an Optuna journal"),
    # perf: one line, and no warning before it
    "perf_batch_one": (["perf", "--batch-size", "1"], "--batch-size: 1 is too small"),
    "perf_error_after_few_steps": (["perf", "--steps", "2", "--T", "0"], "--T: 0"),
}
EXIT_CODES = {"plugin_ctrl_c": 130}  # the others: 2
EXPANDING = {"run_config_laughs", "sweep_laughs_values", "sweep_laughs_description",
             "sweep_huge_grid", "sweep_huge_run_cap"}


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file's bytes and every folder (None): a case may neither change nor add one."""
    return {str(p): p.read_bytes() if p.is_file() else None for p in root.rglob("*")}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """One folder of hostile files for every case (each case checks it leaves it as it was)."""
    t = tmp_path_factory.mktemp("hostile")
    build(t)
    (t / "huge.yaml").write_text("# padding\n" * 120000)
    (t / "res2").mkdir()
    (t / "res2" / "ok").write_text("a file where the study folder goes\n")
    return t


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_input_is_one_line_exit_2(case, world, capsys):
    argv, words = CASES[case]
    tmp_path = world
    before = snapshot(tmp_path)
    argv = [a.replace("{t}", str(tmp_path)) for a in argv]
    if case in EXPANDING:
        tracemalloc.start()
    try:
        rc = run_main(argv)
    finally:
        peak = tracemalloc.get_traced_memory()[1] if tracemalloc.is_tracing() else 0
        tracemalloc.stop()
    out, err = capsys.readouterr()
    assert rc == EXIT_CODES.get(case, 2), (out, err)
    assert err.count("\n") == 1 and err.startswith("bench"), err
    assert "Traceback" not in err + out
    assert words.replace("{t}", str(tmp_path)) in err, err
    assert peak < 64 * 2**20, f"{peak / 2**20:.0f} MiB traced"
    after = snapshot(tmp_path)
    assert after == before  # nothing changed, lost or added (not even an empty folder)


def run_main(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's usage errors
        return int(exc.code)


def test_a_huge_grid_with_a_small_run_cap_is_never_listed():
    from bench.sweep.spec import parse_spec

    tracemalloc.start()
    spec = parse_spec({"name": "g", "method": "grid", "run_cap": 3, "parameters": {
        "seed": {"min": 0, "max": 200000000}, "N": {"values": [1, 4]}}})
    slots = spec.slots()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert slots == [{"seed": 0, "N": 1}, {"seed": 0, "N": 4}, {"seed": 1, "N": 1}]
    assert spec.grid_size() == 200000001 * 2 and peak < 2**20
    small = parse_spec({"name": "g", "method": "grid", "parameters": {
        "seed": {"values": [0, 1]}, "N": {"min": 1, "max": 3},
        "lr": {"distribution": "q_uniform", "min": 0.1, "max": 0.3, "q": 0.1}}})
    import itertools

    expected = [dict(zip(("seed", "N", "lr"), p)) for p in
                itertools.product([0, 1], [1, 2, 3], [0.1, 0.2, 0.3])]
    assert small.grid() == expected  # the same order as itertools.product


def test_nothing_in_the_error_line_expands(tmp_path, capsys):
    """A huge value in a file is quoted cut to a bounded line."""
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({**GOOD_SWEEP, "method": "x" * 100000}))
    assert main(["sweep", str(tmp_path / "s.yaml"), "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and len(err) < 700


def test_every_option_of_every_verb_has_help():
    import argparse

    from bench.cli import build_parser

    verbs = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    missing = [f"{verb} {action.dest}" for verb, parser in verbs.choices.items()
               for action in parser._actions
               if not isinstance(action, argparse._HelpAction) and not action.help]
    assert sorted(verbs.choices) == ["eval", "figures", "perf", "report", "run", "status",
                                     "sweep"]
    assert missing == []


def test_perf_settings_come_from_one_dataclass(monkeypatch):
    """The command line passes only what was given; PerfSettings holds every default."""
    import bench.perf
    from bench.perf_settings import PerfSettings

    seen = []
    monkeypatch.setattr(bench.perf, "main_perf", lambda s: seen.append(s) or 0)
    assert main(["perf", "--steps", "7", "--no-baselines", "--T", "2"]) == 0
    assert seen == [PerfSettings(steps=7, no_baselines=True, T=2)]
    assert (seen[0].batch_size, seen[0].models, seen[0].variants) == (32, "sparse_resnet18", None)
    from bench.errors import BenchError

    with pytest.raises(BenchError, match="--batch-size: 1 is too small"):
        bench.perf.run_perf(PerfSettings(batch_size=1))  # refused before any model is built


def test_batch_limits_keep_their_type_and_old_records_their_meaning():
    from dataclasses import fields

    from bench.config import NULL_MEANS, RunConfig, build_config, record_layer

    # null is a setting exactly where RunConfig declares it (and says what it means)
    assert {f.name for f in fields(RunConfig) if "None" in str(f.type)} == set(NULL_MEANS)
    cfg = build_config({"limit_train_batches": "1", "limit_val_batches": "1.0",
                        "limit_test_batches": 0.25})
    assert [type(v) for v in (cfg.limit_train_batches, cfg.limit_val_batches,
                              cfg.limit_test_batches)] == [int, float, float]
    assert json.loads(json.dumps(cfg.to_dict()))["limit_train_batches"] == 1  # an int in JSON
    assert json.dumps(cfg.to_dict()["limit_val_batches"]) == "1.0"
    # records before typed limits: floats only, > 1 a number of batches, 1.0 the whole set
    old = record_layer({"limit_train_batches": 3.0, "limit_val_batches": 1.0,
                        "limit_test_batches": 0.5, "colour": "red"}, "old config.json")
    assert old == {"limit_train_batches": 3, "limit_val_batches": 1.0, "limit_test_batches": 0.5}
    assert type(old["limit_train_batches"]) is int and type(old["limit_val_batches"]) is float


def test_an_integer_limit_is_that_many_batches(tmp_path):
    """Lightning's rule, end to end: limit_train_batches=1 trains one batch per epoch."""
    from conftest import tiny_config

    from bench.run import execute

    cfg = tiny_config(tmp_path, epochs=1, limit_train_batches=1, limit_val_batches=1,
                      limit_test_batches=1, probes=False, wandb="disabled", run_id="one",
                      checkpoint="none")
    execute(cfg)
    record = tmp_path / "default" / "runs" / "one"
    rows = (record / "metrics.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].split(",")[rows[0].split(",").index("step")] == "1"
    assert json.loads((record / "config.json").read_text())["limit_train_batches"] == 1


def test_a_limit_giving_no_batch_fails_its_trial_in_one_line(tmp_path, capsys):
    from bench.sweep import main_sweep

    (tmp_path / "s.yaml").write_text(param_sweep(limit_val_batches={"values": [0.001, 0.002]},
                                                 seed={"value": 0}))
    assert main_sweep(str(tmp_path / "s.yaml"), results=str(tmp_path / "r")) == 1
    out = capsys.readouterr().out
    assert "[done 0 | running 0 | failed 2 | left 0]" in out, out
    errors = [json.loads(p.read_text())["error"]
              for p in sorted((tmp_path / "r" / "ok" / "runs").glob("*/summary.json"))]
    assert errors == [f"BenchError: config key 'limit_val_batches': {v} of the 4 val batches of "
                      "digits (197 images, batch_size 64) is no batch; give a share of at least "
                      "1/4 or a number of batches (an integer)" for v in (0.001, 0.002)]


def test_report_writes_only_under_reports_of_its_study(tmp_path, monkeypatch, world):
    """`runs/..` names its study folder, not '..': the report goes to reports/<study>/."""
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    assert main(["report", f"{world}/reports_in/good/runs/.."]) == 0
    assert [p.name for p in here.iterdir()] == ["reports"]
    assert [p.name for p in (here / "reports").iterdir()] == ["good"]
    assert (here / "reports" / "good" / "index.md").is_file()


@pytest.mark.parametrize("layer", [{"dataset": "digits"},
                                   {"dataset": "fake", "fake_images": 123},
                                   {"dataset": "fake", "fake_images": 101,
                                    "fake_like": "cifar10dvs", "image_size": 8}])
def test_the_limit_check_counts_the_images_the_loaders_hold(layer):
    """split_sizes (checked before anything loads) = the datamodule's splits once set up."""
    from bench.config import build_config
    from bench.data import DATASETS, build_datamodule

    cfg = build_config(layer, {"accelerator": "cpu"})
    dm = build_datamodule(cfg)
    dm.setup("fit")
    loaded = {s: len(getattr(dm, f"{s}_dataloader")().dataset) for s in ("train", "val", "test")}
    assert loaded == DATASETS.get(cfg.dataset).split_sizes(cfg)
