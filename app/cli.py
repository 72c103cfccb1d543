"""The `tdx-contention` command: serve, run, scenarios, validate, sweep.

`run`, `scenarios` and `validate` import only engine/: a headless run never loads the
web stack.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from engine import afford
from engine.config import MODULE_VERSIONS, POLICIES, RETRY_MAX_RANGE, VCPUS_RANGE, Config
from engine.errors import ConfigErrors, EngineError, ScenarioError
from engine.export import FORMATS, LARGE_EXPORT_BYTES, estimated_bytes
from engine.scenario import (
    BUILTIN_NAMES,
    MAX_DURATION_US,
    Scenario,
    builtin_scenario,
    builtin_scenarios,
    load,
)


def _int_in(lo: int, hi: int | None) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < lo or (hi is not None and value > hi):
            accepted = f"from {lo} to {hi}" if hi is not None else f">= {lo}"
            raise argparse.ArgumentTypeError(f"{value} is out of range; accepts an integer {accepted}")
        return value
    return parse


def _on_off(text: str) -> bool:
    if text not in ("on", "off"):
        raise argparse.ArgumentTypeError(f"{text!r}: accepts on or off")
    return text == "on"


def _port(text: str) -> int:
    return _int_in(0, 65535)(text)  # type: ignore[no-any-return]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tdx-contention",
                                     description="TDX module lock-contention observatory")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="start the dashboard server")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=_port, default=8000, help="port (default 8000)")
    serve.add_argument("--data-dir", default="data", help="where runs are kept (default ./data)")
    serve.add_argument("--token", default=None,
                       help="token for state-changing routes (default: $TDX_CONTENTION_TOKEN); "
                            "required when binding a non-loopback address")
    serve.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                       help="also answer requests whose Host is NAME (repeatable); others "
                            "get 400, so a DNS-rebinding page cannot reach the server")
    from app.sweep.cli import scheduler_address

    serve.add_argument("--dask-scheduler", type=scheduler_address, default=None,
                       metavar="ADDRESS", help="run sweeps on the Dask cluster at tcp://HOST:PORT "
                                               "(default: a local pool of processes)")

    run = sub.add_parser("run", help="simulate headlessly and print a summary")
    run.add_argument("--scenario", default=None,
                     help=f"built-in scenario: {', '.join(BUILTIN_NAMES)} (default zero-step)")
    run.add_argument("--scenario-file", default=None, metavar="FILE.toml",
                     help="a scenario file; command-line options override it")
    run.add_argument("--policy", choices=POLICIES, default=None, help="default bounded")
    run.add_argument("--retry-max", type=_int_in(*RETRY_MAX_RANGE), default=None,
                     help=f"integer {RETRY_MAX_RANGE[0]}..{RETRY_MAX_RANGE[1]} (default 16)")
    run.add_argument("--zero-step", type=_on_off, default=None, metavar="on|off",
                     help="zero-step mitigation (default on)")
    run.add_argument("--vcpus", type=_int_in(*VCPUS_RANGE), default=None,
                     help=f"integer {VCPUS_RANGE[0]}..{VCPUS_RANGE[1]} (default 8)")
    run.add_argument("--module-version", choices=MODULE_VERSIONS, default=None, help="default 1.5")
    run.add_argument("--seed", type=_int_in(0, None), default=None, help="integer >= 0 (default 1)")
    run.add_argument("--duration-us", type=_int_in(1, MAX_DURATION_US), default=None,
                     help="simulated microseconds (default: the scenario's, 100000)")
    run.add_argument("--export", default=None, metavar="FILE",
                     help="write the event log here (gzip'ed when FILE ends in .gz)")
    run.add_argument("--format", choices=FORMATS, default=None,
                     help="event log format (default: from the --export file name: .csv csv, "
                          ".json chrome, .pftrace perfetto, otherwise jsonl)")
    run.add_argument("--json", action="store_true", help="print the summary as one JSON object")

    sub.add_parser("scenarios", help="list the built-in scenarios")
    validate = sub.add_parser("validate", help="check a scenario file and explain its errors")
    validate.add_argument("file", metavar="FILE.toml")
    from app.sweep.cli import add_arguments as sweep_arguments

    sweep_arguments(sub.add_parser("sweep", help="run a grid of configs and seeds (a sweep)"))
    return parser


# File name endings and the export format they imply when --format is not given.
SUFFIX_FORMATS = {".jsonl": "jsonl", ".csv": "csv", ".json": "chrome", ".pftrace": "perfetto"}


def export_format(path: Path, given: str | None) -> str:
    """The format to write `path` in: `given`, else the one its name ends with (a final
    .gz aside: run.pftrace.gz is a gzip'ed Perfetto trace), else jsonl."""
    if given is not None:
        return given
    if is_gzip(path):
        path = path.with_suffix("")
    return SUFFIX_FORMATS.get(path.suffix.lower(), "jsonl")


def is_gzip(path: Path) -> bool:
    """Whether the export is written gzip'ed: a file name ending in .gz."""
    return path.suffix.lower() == ".gz"


def _check_empty(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    for option, value in (("--scenario", args.scenario), ("--scenario-file", args.scenario_file),
                          ("--export", args.export)):
        if value is not None and not value.strip():
            parser.error(f"argument {option}: expected a value, got {value!r}")
    if args.format is not None and args.export is None:
        parser.error("argument --format: only with --export FILE (the event log's format)")


def _open_export(path: Path, parser: argparse.ArgumentParser) -> Any:
    """The export's .partial file, opened before simulating: every problem of the path
    (a directory, no such directory, no permission) is found before any work is done."""
    if path.is_dir():
        parser.error(f"argument --export: {str(path)!r} is a directory; expected a file name")
    if not path.parent.is_dir():
        parser.error(f"argument --export: directory {str(path.parent)!r} does not exist")
    tmp = path.with_name(path.name + ".partial")
    try:
        return open(tmp, "wb")  # noqa: SIM115  (binary: gzip and the Perfetto trace)
    except OSError as exc:
        parser.error(f"argument --export: cannot write {str(tmp)!r}: {exc.strerror}")


def _cmd_run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.scenario is not None and args.scenario_file is not None:
        parser.error("argument --scenario: not allowed with --scenario-file")
    _check_empty(args, parser)
    try:
        if args.scenario_file is not None:
            scenario = load(args.scenario_file)
        else:
            scenario = builtin_scenario(args.scenario or "zero-step")
    except ScenarioError as exc:
        if args.scenario_file is None:
            parser.error(f"argument --scenario: {exc.messages[0]}")
        print("\n".join(exc.messages), file=sys.stderr)
        return 2
    overrides = {k: v for k, v in (
        ("policy", args.policy), ("retry_max", args.retry_max), ("zero_step", args.zero_step),
        ("vcpus", args.vcpus), ("module_version", args.module_version), ("seed", args.seed),
    ) if v is not None}
    try:
        config = scenario.config(**overrides)
    except ConfigErrors as exc:
        parser.error(str(exc))
    try:  # with the run's own vCPU count, which --vcpus may have raised
        afford.check(scenario, config.vcpus, args.scenario_file or scenario.name)
    except ScenarioError as exc:
        print("\n".join(exc.messages), file=sys.stderr)
        return 2
    duration_us = args.duration_us or scenario.duration_us
    end_ns = duration_us * 1000
    export_path = Path(args.export) if args.export is not None else None
    fmt = export_format(export_path, args.format) if export_path is not None else "jsonl"
    out = _open_export(export_path, parser) if export_path is not None else None
    from engine.run import run

    progress = _progress(end_ns) if sys.stderr.isatty() else None
    try:
        if out is not None and export_path is not None:
            expected = _expected_records(config, scenario, end_ns)
            _tell_size(fmt, expected, export_path)
            with out:
                result = run(config, scenario, end_ns, out, fmt, progress,
                             expected_records=expected, gzip=is_gzip(export_path))
            Path(out.name).replace(export_path)
        else:
            result = run(config, scenario, end_ns, None, fmt, progress)
    except (EngineError, OSError) as exc:
        if out is not None:
            Path(out.name).unlink(missing_ok=True)
        where = f"{out.name}: " if isinstance(exc, OSError) and out is not None else ""
        print(f"tdx-contention run: error: {where}{exc}", file=sys.stderr)
        return 1
    if progress is not None:
        print(file=sys.stderr)
    if args.json:
        print(json.dumps(result))
    else:
        _print_summary(result, export_path, fmt)
    return 0


def _expected_records(config: Config, scenario: Scenario, end_ns: int) -> int:
    """About how many records the run will have: its first 2% (at least 1 ms) simulated,
    the rate of that pilot's second half (past the start-up) taken for the rest.
    Deterministic, so the same command writes the same file."""
    from engine.run import records

    pilot_ns = min(end_ns, max(end_ns // 50, 1_000_000))
    half_ns = pilot_ns // 2
    count = later = 0
    for rec in records(config, scenario, pilot_ns, finish=False):
        count += 1
        later += rec[0] >= half_ns
    return count + later * (end_ns - pilot_ns) // max(1, pilot_ns - half_ns)


def _tell_size(fmt: str, expected_records: int, path: Path) -> None:
    """Say on stderr how big a large export will be, before writing it."""
    size = estimated_bytes(fmt, expected_records)
    if size > LARGE_EXPORT_BYTES:
        gz = " before gzip" if is_gzip(path) else ""
        shown = f"{size / 1e9:.1f} GB" if size >= 1e9 else f"{size / 1e6:.0f} MB"
        print(f"tdx-contention run: the {fmt} export will be about {shown}{gz} "
              f"(about {expected_records:,} records); writing {path}", file=sys.stderr)


def _progress(end_ns: int) -> Any:
    last = [0.0]

    def show(now_ns: int) -> None:
        wall = time.monotonic()
        if wall - last[0] >= 0.25 or now_ns >= end_ns:
            last[0] = wall
            print(f"\rsimulated {now_ns / 1e6:9.3f} of {end_ns / 1e6:.3f} ms "
                  f"({100 * now_ns / end_ns:5.1f}%)", end="", file=sys.stderr, flush=True)
    return show


def _print_summary(s: dict[str, Any], export_path: Path | None, fmt: str) -> None:
    c = s["config"]
    print(f"scenario {c['scenario']}, policy {c['policy']}, retry max {c['retry_max']}, "
          f"zero-step {'on' if c['zero_step'] else 'off'}, {c['vcpus']} vCPUs, "
          f"module {c['module_version']}, seed {c['seed']}")
    print(f"simulated {s['sim_ns'] / 1e6:.3f} ms: {s['events']} events, {s['attempts']} attempts, "
          f"{s['busy']} BUSY, {s['retries']} retries, {s['giveups']} give-ups, "
          f"{s['zero_step_activations']} zero-step activations")
    busy = {k: v for k, v in s["busy_by_operand"].items() if v}
    if busy:
        print("BUSY by operand: " + ", ".join(f"{k} {v}" for k, v in busy.items()))
    for leaf, counts in s["by_leaf"].items():
        print(f"  {leaf:24} attempts {counts['attempts']:8} busy {counts['busy']:8} "
              f"retries {counts['retries']:8} giveups {counts['giveups']:8}")
    if s.get("kvm_bugs"):
        print(f"KVM bugs (KVM_BUG_ON: a zap's last try or a build SEAMCALL failed): "
              f"{s['kvm_bugs']}")
    if s.get("stalls"):
        print(f"stalls (actors that wait on each other for good): {s['stalls']}")
    if s.get("ioctls"):
        print(f"ioctls returned to userspace: {s['ioctls']}, {s['ioctl_errors']} with an error")
    if s.get("injected_busy"):
        print(f"injected BUSY (workload.inject_busy_every): {s['injected_busy']}")
    if export_path is not None:
        print(f"event log ({fmt}) written to {export_path}")


def _cmd_scenarios() -> int:
    for scenario in builtin_scenarios():
        print(f"{scenario.name}\t{scenario.description}")
    return 0


def _cmd_validate(path: str) -> int:
    try:
        scenario = load(path)
    except ScenarioError as exc:
        print("\n".join(exc.messages), file=sys.stderr)
        return 1
    print(f"{path}: ok: scenario {scenario.name!r}: {scenario.description}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "run":
        return _cmd_run(args, parser)
    if args.command == "scenarios":
        return _cmd_scenarios()
    if args.command == "validate":
        return _cmd_validate(args.file)
    if args.command == "sweep":
        from app.sweep.cli import main as sweep_main

        return sweep_main(args, parser)
    from app.serve import serve

    return serve(args, parser)


if __name__ == "__main__":
    sys.exit(main())
