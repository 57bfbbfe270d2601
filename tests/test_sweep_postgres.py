"""Two machines, one study: two `bench sweep --storage postgresql://...` processes started
together against a real PostgreSQL server on loopback share one grid; each point runs once.

The test starts a throwaway cluster (Debian's postgresql package: initdb + pg_ctl, trust auth,
a free port) in a temporary folder and stops it afterwards. initdb refuses to run as root, so
as root the cluster belongs to the `postgres` user (or `nobody`)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from bench.sweep import main_status

TINY = {"dataset": "digits", "epochs": 1, "limit_train_batches": 2, "limit_val_batches": 2,
        "limit_test_batches": 2, "batch_size": 32, "wandb": "disabled",
        "arch": "spiking_resnet18"}


def pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_owner(cmd: list[str], user: str | None) -> list[str]:
    return ["runuser", "-u", user, "--", *cmd] if user else cmd


@pytest.fixture(scope="module")
def postgres_url():
    initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        why = "PostgreSQL is not installed (apt-get install postgresql; .ci/run does)"
        print(f"skipping: {why}")
        pytest.skip(why)
    user = None
    if os.geteuid() == 0:  # initdb refuses root
        user = next(u for u in ("postgres", "nobody") if _user_exists(u))
    # not under pytest's tmp_path: its parents are private to root
    home = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    data = home / "data"
    if user:
        shutil.chown(home, user)
    port = free_port()
    run = dict(check=True, capture_output=True, text=True, timeout=60)
    subprocess.run(as_owner([initdb, "-D", str(data), "-A", "trust", "-U", "bench",
                             "--no-sync"], user), **run)
    options = f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(as_owner([pg_ctl, "-D", str(data), "-o", options, "-l", str(home / "log"),
                             "-w", "start"], user), **run)
    try:
        yield f"postgresql+psycopg2://bench@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(as_owner([pg_ctl, "-D", str(data), "-m", "immediate", "stop"], user),
                       capture_output=True, timeout=60)
        shutil.rmtree(home, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def test_two_machines_share_one_grid(tmp_path, postgres_url, capsys):
    params = {"seed": {"values": [0, 1, 2, 3]}, **{k: {"value": v} for k, v in TINY.items()}}
    file = tmp_path / "shared.yaml"
    file.write_text(yaml.safe_dump({"name": "shared", "method": "grid", "parameters": params,
                                    "metric": {"name": "test_acc", "goal": "maximize"}}))
    machines = [tmp_path / "machine_a", tmp_path / "machine_b"]
    # two one-core "machines" on this one: torch would give each process every core
    env = {**os.environ, "WANDB_SILENT": "true", "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "bench.cli", "sweep", str(file),
                               "--storage", postgres_url, "--results", str(m)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
             for m in machines]  # started at the same time: both race to create the study
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(outs)

    study = optuna.load_study(study_name="shared", storage=postgres_url)
    assert len(study.trials) == 4  # the grid was enqueued once, not once per machine
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert sorted(t.params["seed"] for t in study.trials) == [0, 1, 2, 3]
    runs = {m: {d.name for d in (m / "shared" / "runs").glob("trial-*")}
            if (m / "shared" / "runs").is_dir() else set() for m in machines}
    assert not runs[machines[0]] & runs[machines[1]]  # no trial ran on both machines
    assert runs[machines[0]] | runs[machines[1]] == {f"trial-{n:04d}" for n in range(4)}
    for t in study.trials:  # each trial points at the record its machine wrote
        assert Path(t.user_attrs["run_dir"]).name in runs[Path(t.user_attrs["run_dir"]).parents[2]]
    assert all((m / "shared" / "sweep.yaml").is_file() for m in machines)

    assert main_status(str(machines[0] / "shared"), storage=postgres_url) == 0
    table = capsys.readouterr().out
    assert table.count("| COMPLETE |") == 4 and "done 4 | running 0 | failed 0 | left 0" in table
