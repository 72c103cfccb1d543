"""`tdx-contention sweep`: run, list and check sweep files (imports no web stack)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from app.sweep.spec import MAX_SEEDS, Sweep, SweepError, builtin_names, builtin_sweep, load_sweep

MAX_WORKERS = 256
IN_USE = 75  # EX_TEMPFAIL: another sweep writes into the directory; try again later
SCHEMES = ("tcp", "tls", "ws", "wss")


def _int_in(lo: int, hi: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{value} is out of range; accepts an integer "
                                             f"from {lo} to {hi}")
        return value
    return parse


def scheduler_address(text: str) -> str:
    """A Dask scheduler address: tcp://HOST:PORT (or tls://, ws://, wss://)."""
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in SCHEMES or not parts.hostname or port is None or parts.path:
        raise argparse.ArgumentTypeError(f"{text!r}: accepts a Dask scheduler address "
                                         "tcp://HOST:PORT")
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", nargs="?", metavar="FILE.toml", help="the sweep file to run")
    parser.add_argument("--name", default=None, help="run a built-in sweep (see --list)")
    parser.add_argument("--list", action="store_true", help="list the built-in sweeps")
    parser.add_argument("--check", default=None, metavar="FILE",
                        help="validate a sweep file without running it")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="output directory (default ./sweeps/NAME); a rerun into it "
                             "computes only the missing rows")
    parser.add_argument("--seeds", type=_int_in(1, MAX_SEEDS), default=None,
                        help="seeds 1..N (default: the file's `seeds`)")
    parser.add_argument("--workers", type=_int_in(1, MAX_WORKERS), default=None,
                        help="local worker processes (default: the CPU count)")
    parser.add_argument("--scheduler", type=scheduler_address, default=None, metavar="ADDRESS",
                        help="run on the Dask cluster whose scheduler is at tcp://HOST:PORT")
    parser.add_argument("--nice", type=_int_in(0, 19), default=19,
                        help="the local workers' nice value (default 19: a live dashboard on "
                             "this machine keeps its CPU; 0 competes as an equal)")
    # The server's sweep processes: stop (keeping every finished row) when the server dies.
    parser.add_argument("--stop-with-parent", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-png", action="store_true",
                        help="do not render the report's figures as PNG files")


def _resolve(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Sweep:
    if (args.file is None) == (args.name is None):
        parser.error("argument FILE.toml: give a sweep file or --name NAME (not both)")
    sweep = builtin_sweep(args.name) if args.name else load_sweep(args.file)
    return replace(sweep, seeds=args.seeds) if args.seeds else sweep


def main(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Dispatch of `tdx-contention sweep ...`; 2 for bad input (nothing written)."""
    if args.list:
        for name in builtin_names():
            sweep = builtin_sweep(name)
            print(f"{name}\t{sweep.description} ({sweep.runs()} runs)")
        return 0
    try:
        if args.check is not None:
            sweep = load_sweep(args.check)
            print(f"{args.check}: ok: sweep {sweep.name!r}: {sweep.count()} points x "
                  f"{sweep.seeds} seeds = {sweep.runs()} runs of {sweep.duration_us} us")
            return 0
        sweep = _resolve(args, parser)
    except SweepError as exc:
        print("\n".join(exc.messages), file=sys.stderr)
        return 2
    if args.scheduler and args.workers:
        parser.error("argument --workers: not allowed with --scheduler (the cluster has its own)")
    out = Path(args.out) if args.out else Path("sweeps") / sweep.name
    return _run(sweep, out, args)


def _run(sweep: Sweep, out: Path, args: argparse.Namespace) -> int:
    from app.sweep.driver import run_sweep
    from app.sweep.progress import Printer
    from app.sweep.store import InUse, StoreError

    printer = Printer(sys.stderr)
    stop = threading.Event()
    # SIGTERM (the server's cancel): finish the running points, write the files, exit.
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    if args.stop_with_parent:
        _watch_parent(stop)
    try:
        result = run_sweep(sweep, out, args.workers, args.scheduler, printer, stop,
                           png=not args.no_png, nice=args.nice)
    except InUse as exc:
        print(f"tdx-contention sweep: error: {exc}", file=sys.stderr)
        return IN_USE
    except StoreError as exc:
        print(f"tdx-contention sweep: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ninterrupted: the finished rows are in {out}; rerun to resume", file=sys.stderr)
        return 130
    except (OSError, RuntimeError) as exc:
        print(f"tdx-contention sweep: error: {exc}", file=sys.stderr)
        return 1
    printer.end()
    return _outcome(sweep, out, result)


def _outcome(sweep: Sweep, out: Path, result: dict[str, Any]) -> int:
    """Say what the sweep did (failures, files, the answer table); the exit status."""
    from app.sweep.answer import Answers, scenario_values

    for failure in result["failures"]:
        print(f"failed: point {failure['point']} seed {failure['seed']} "
              f"(fixed {failure['fixed']}): {failure['error']}", file=sys.stderr)
    print(f"{len(result['rows'])} rows in {out / 'points.csv'}; summary.csv, sweep.json and "
          f"report.html beside it")
    if "retry_max" in sweep.axes and result["summary"]:
        answers = Answers(sweep.axes, result["summary"], scenario_values(result))
        print(answers.plain())
    if result["state"] == "cancelled":
        print(f"stopped: {len(result['rows'])} rows kept in {out}; rerun to resume",
              file=sys.stderr)
        return 128 + signal.SIGTERM
    return 1 if result["failures"] else 0


def _watch_parent(stop: threading.Event) -> None:
    """Set `stop` once the process that started this one is gone (re-parented)."""
    parent = os.getppid()

    def watch() -> None:
        while not stop.wait(0.5):
            if os.getppid() != parent:
                stop.set()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
