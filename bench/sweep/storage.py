"""Where a study lives, and who runs each of its trials.

Local sweeps use an Optuna journal file in results/<sweep>/ (append-only, safe for several
processes on one machine; sqlite is not); `--storage postgresql://...` uses RDBStorage so
machines can share one study. A trial records its owner (host, pid, boot id, process start
time) so a later `bench sweep` can tell a trial whose process died from one still running.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock, JournalStorage

from bench import schema
from bench.errors import BenchError

JOURNAL = "optuna.journal"
OWNER = schema.OWNER_ATTR  # trial system attr
HEARTBEAT_S = 60  # RDB heartbeat: record every minute, a trial silent for 3 is stale
GRACE_S = 180
MAX_RETRY = 3  # an interrupted trial is re-run at most this many times


def quiet_optuna() -> None:
    """Optuna's INFO lines and experimental-API warnings would drown bench's progress lines."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")


def retry_callback() -> RetryHeartbeatStaleTrialCallback:
    # optuna 4.9 renamed RetryFailedTrialCallback to this (the old name is a deprecated alias);
    # it re-enqueues a dead trial as WAITING with the same params and user attrs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)


def mask(url: str) -> str:
    """The URL without its password, for messages and files."""
    return re.sub(r"(//[^:/@]+):[^@]*@", r"\1:***@", url)


def journal_path(study_dir: Path) -> Path:
    return Path(study_dir) / JOURNAL


def open_storage(url: str | None, study_dir: Path, *, workers: int = 1,
                 create: bool = True) -> BaseStorage:
    """The study's storage: a journal file (default, or a path) or an RDB URL."""
    if url is None or "://" not in url:
        path = journal_path(study_dir) if url is None else Path(url)
        check_journal_path(path, given=url is not None)
        if not create and not path.is_file():
            raise BenchError(f"no sweep journal at {path}; was the sweep run with --storage? "
                             "pass the same --storage URL")
        path.parent.mkdir(parents=True, exist_ok=True)
        repair_journal(path)
        try:
            return JournalStorage(JournalFileBackend(str(path)))
        except JOURNAL_DAMAGE as exc:
            raise BenchError(f"{path}: not a readable Optuna journal ({type(exc).__name__}); "
                             "restore it from a backup, or move it away to start the study "
                             "over") from None
    if url.startswith("sqlite") and workers > 1:
        raise BenchError(f"--storage {url}: sqlite cannot take {workers} parallel workers; use "
                         "the default journal file or postgresql://")
    return _open_rdb(url)


# what replaying a damaged or foreign file as a journal raises (json, bytes, missing fields)
JOURNAL_DAMAGE = (ValueError, TypeError, KeyError, AttributeError, IndexError)


def _first_line(path: Path, limit: int = 65536) -> bytes:
    with open(path, "rb") as f:
        return f.readline(limit)


def is_journal(path: Path) -> bool:
    """An empty file, or one whose first line is an Optuna journal record."""
    line = _first_line(path)
    if not line:
        return True
    try:
        record = json.loads(line)
    except ValueError:
        return False
    return isinstance(record, dict) and "op_code" in record


def check_journal_path(path: Path, *, given: bool) -> None:
    """`--storage PATH` takes only a journal bench created, or a new *.journal path: never
    appends Optuna records to some other file."""
    flag = "--storage " if given else ""
    if path.is_dir():
        raise BenchError(f"{flag}{path} is a folder; give a journal file (*.journal) or a "
                         "database URL (postgresql://...)")
    if path.exists() and not path.is_file():
        raise BenchError(f"{flag}{path} is not a regular file")
    if path.is_file():
        if not is_journal(path):
            raise BenchError(f"{flag}{path} is not an Optuna journal; give a new *.journal path "
                             "or a database URL (postgresql://...)")
    elif given and path.suffix != ".journal":
        raise BenchError(f"--storage {path}: a new journal file must end in .journal "
                         "(or give a database URL, postgresql://...)")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise BenchError(f"{flag}{path}: {parent} is a file, not a folder")


def repair_journal(path: Path) -> None:
    """Cut a torn last line (a write stopped by power loss or a full disk) off the journal,
    keeping the cut bytes beside it. Optuna would append after the fragment and every later
    read of the study would fail. Done under the journal's own lock: an append in progress
    holds it, so what we see unlocked-and-unterminated is torn."""
    if not path.is_file() or path.stat().st_size == 0 or _last_byte(path) == b"\n":
        return
    lock = JournalFileSymlinkLock(str(path))
    lock.acquire()
    try:
        data = path.read_bytes()
        keep = data.rfind(b"\n") + 1
        if keep == len(data):
            return
        backup = path.with_name(f"{path.name}.torn-{time.strftime('%Y%m%d-%H%M%S')}")
        backup.write_bytes(data[keep:])
        with open(path, "r+b") as f:
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())
    finally:
        lock.release()
    print(f"repaired {path}: its last line was cut off mid-write ({len(data) - keep} bytes, "
          f"kept in {backup})", flush=True)


def _last_byte(path: Path) -> bytes:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1)


def _open_rdb(url: str, attempts: int = 5) -> RDBStorage:
    # two machines starting at once may both create the schema: the loser retries
    last: Exception | None = None
    for attempt in range(attempts):
        try:
            return RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                              heartbeat_stale_trial_callback=retry_callback(),
                              engine_kwargs={"pool_pre_ping": True})
        except ImportError as exc:
            raise BenchError(f"--storage {mask(url)}: missing database driver: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - reported as one line below
            last = exc
            if "Could not parse" in str(exc) or "Can't load plugin" in str(exc):
                break
            time.sleep(0.5 * (attempt + 1))
    first = str(last).strip().splitlines()[0] if last and str(last).strip() else type(last).__name__
    raise BenchError(f"--storage {mask(url)}: cannot open the study storage: {first}")


# ---- trial owners ---------------------------------------------------------------------------

def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat fields after the command name (Linux): [state, ppid, ...]."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _start_time(pid: int) -> str | None:
    """Process start time in clock ticks since boot, to tell a reused pid apart."""
    stat = _stat(pid)
    return stat[19] if stat else None


def owner_info(trial_number: int) -> dict[str, Any]:
    pid = os.getpid()
    return {"trial": trial_number, "host": socket.gethostname(), "pid": pid, "boot": _boot_id(),
            "start": _start_time(pid)}


def owner_alive(owner: dict[str, Any]) -> bool | None:
    """True/False for an owner on this machine; None when it runs elsewhere (cannot tell)."""
    if owner.get("host") != socket.gethostname():
        return None
    if owner.get("boot") != _boot_id():
        return False  # this machine rebooted since
    pid = int(owner["pid"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    stat = _stat(pid)
    if stat and stat[0] in ("Z", "X"):
        return False  # exited, not yet reaped
    return _start_time(pid) == owner.get("start")
