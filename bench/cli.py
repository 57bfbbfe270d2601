"""The `bench` command: a thin layer over functions a notebook can call.

Every verb imports its implementation lazily so `bench --help` is instant and a user error
(BenchError) is printed as one line with exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import errno
import sys
from pathlib import Path
from typing import Callable, NoReturn

from bench.errors import BenchError

MAX_MESSAGE = 500  # characters of an error line (a value quoted in it may be huge)


def _run(args: argparse.Namespace) -> int:
    from bench.run import main_run

    if args.trust_plugins and not args.resume:
        raise BenchError("--trust-plugins goes with --resume (it trusts the run's recorded "
                         "plugin files)")
    return main_run(config_file=args.config, sets=args.set, results=args.results,
                    resume=args.resume, plugins=args.plugin)


def _eval(args: argparse.Namespace) -> int:
    from bench.evaluate import main_eval

    return main_eval(args.target, sets=args.set, split=args.split)


def _sweep(args: argparse.Namespace) -> int:
    from bench.sweep import main_sweep

    return main_sweep(args.file, sets=args.set, workers=args.workers, storage=args.storage,
                      results=args.results, plugins=args.plugin)


def _status(args: argparse.Namespace) -> int:
    from bench.sweep import main_status

    return main_status(args.results_dir, storage=args.storage)


def _folder(flag: str, path: str | None) -> None:
    """An output/results folder argument must not name an existing file."""
    if path is not None and Path(path).exists() and not Path(path).is_dir():
        raise BenchError(f"{flag} {path} is a file; give a folder")


def _report(args: argparse.Namespace) -> int:
    from bench.report import main_report

    _folder("--out", args.out)
    return main_report(args.results_dirs, out=args.out, baseline=args.baseline)


def _figures(args: argparse.Namespace) -> int:
    from bench.report.figures import main_figures

    _folder("--results", args.results)
    _folder("--out", args.out)
    return main_figures(results=args.results, out=args.out)


def _perf(args: argparse.Namespace) -> int:
    from bench.perf import main_perf
    from bench.perf_settings import PerfSettings

    given = {name: getattr(args, name) for name, *_ in PerfSettings.options()
             if hasattr(args, name)}  # the others keep PerfSettings' defaults
    return main_perf(PerfSettings(**given))


class _Parser(argparse.ArgumentParser):
    """Usage mistakes as one line (argparse prints the whole usage first)."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)",
              file=sys.stderr)
        sys.exit(2)


def one_line(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE] + "..."


def _plugin_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--plugin", action="append", metavar="FILE.py",
                        help="a Python file that registers architectures, estimators, neurons, "
                        "data sets or energy models (repeatable; recorded in the config)")


def _trust_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trust-plugins", action="store_true",
                        help="import the plugin files the run's record names without passing "
                        "them again (only for runs you trust: a plugin is code)")


def _perf_options(parser: argparse.ArgumentParser) -> None:
    """The options of bench.perf_settings.PerfSettings (defaults and help declared there)."""
    from bench.perf_settings import PerfSettings

    for name, option, kind, text in PerfSettings.options():
        if kind == "flag":
            parser.add_argument(option, dest=name, action="store_true",
                                default=argparse.SUPPRESS, help=text)
        else:
            parser.add_argument(option, dest=name, type=kind, default=argparse.SUPPRESS,
                                help=text)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="bench",
        description="Benchmark harness for multi-level spiking neural networks "
        "(run, eval, sweep, report, figures, perf).",
    )
    sub = p.add_subparsers(dest="verb", metavar="VERB")

    r = sub.add_parser("run", help="one instrumented training run")
    r.add_argument("--config", help="YAML file of config keys")
    r.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key")
    r.add_argument("--results", help="results root (default results/)")
    r.add_argument("--resume", metavar="RUN_DIR",
                   help="continue an interrupted run from RUN_DIR/last.ckpt (its own config; "
                   "its recorded plugin files must be passed again with --plugin)")
    _plugin_option(r)
    _trust_option(r)
    r.set_defaults(func=_run)

    ev = sub.add_parser("eval", help="measure a trained model again (accuracy, spikes, energy)")
    ev.add_argument("target", metavar="RUN_DIR_OR_CKPT",
                    help="a run folder (its best.ckpt, else last.ckpt) or a .ckpt file")
    ev.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="override a config key that does not change the network")
    ev.add_argument("--split", choices=("test", "val"), default="test",
                    help="the split measured (default test)")
    _plugin_option(ev)
    _trust_option(ev)
    ev.set_defaults(func=_eval)

    s = sub.add_parser("sweep", help="an Optuna sweep described by a W&B-schema YAML file")
    s.add_argument("file", help="sweep file (W&B sweep schema, YAML)")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a parameter")
    s.add_argument("--workers", type=int, default=1, help="trial processes on this machine")
    s.add_argument("--storage", help="optuna storage URL (default: journal file in results/)")
    s.add_argument("--results", help="results root (default results/)")
    _plugin_option(s)
    s.set_defaults(func=_sweep)

    st = sub.add_parser("status", help="the trial table of a sweep")
    st.add_argument("results_dir", help="the sweep's folder, results/<sweep name>")
    st.add_argument("--storage", help="optuna storage URL, if not the study's journal file")
    st.set_defaults(func=_status)

    rp = sub.add_parser("report", help="tables and plots from run records")
    rp.add_argument("results_dirs", nargs="+", metavar="RESULTS_DIR",
                    help="study folders (results/<study>) whose run records are reported")
    rp.add_argument("--out", help="output folder (default reports/<study>)")
    rp.add_argument("--baseline", help="baseline row, e.g. arch=sew_resnet18")
    rp.set_defaults(func=_report)

    f = sub.add_parser("figures", help="the paper's figures and tables beside its numbers")
    f.add_argument("--results", default="results",
                   help="results root holding the paper's studies (default results)")
    f.add_argument("--out", default="reports/paper",
                   help="output folder (default reports/paper)")
    f.set_defaults(func=_figures)

    pf = sub.add_parser("perf", help="time training steps against baselines")
    _perf_options(pf)
    _plugin_option(pf)
    pf.set_defaults(func=_perf)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    func: Callable[[argparse.Namespace], int] = args.func
    from bench.plugins import trust_records

    trust_records(bool(getattr(args, "trust_plugins", False)))  # this command's choice only
    try:
        if getattr(args, "plugin", None):
            from bench.plugins import load_plugins

            load_plugins(args.plugin)  # before any name is checked
        return int(func(args) or 0)
    except BenchError as exc:
        print(f"bench {args.verb}: error: {one_line(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # disk full, permissions, a file where a folder should be
        where = f" {exc.filename}" if exc.filename else ""
        reason = "disk full: " if exc.errno in (errno.ENOSPC, errno.EDQUOT) else ""
        print(f"bench {args.verb}: error: {reason}{one_line(exc.strerror or str(exc))}{where}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"bench {args.verb}: interrupted{getattr(exc, 'where', '')}", file=sys.stderr)
        return 130


def exit_now(code: int) -> NoReturn:
    """End a finished command without the interpreter's teardown: with torch and Lightning
    loaded it frees some 400,000 objects one by one (seconds on a busy CPU) and bench needs none
    of it (records are written and closed, W&B runs finished). The atexit handlers still run:
    logging flushes, W&B's service shuts down, multiprocessing joins what it started."""
    import atexit
    import os

    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def entry() -> NoReturn:
    """The `bench` console script."""
    exit_now(main())


if __name__ == "__main__":
    exit_now(main())
