"""The race gallery: every example scenario file run under its policies, as docs/gallery.md.

    python -m engine.gallery [--examples DIR] [--out FILE] [--check]

Each `examples/*.toml` is an entry: its name, description and source, and one line per
policy of its top-level `policies` list (default: its own `[td]` policy) with what the
run showed, counted from the records: BUSY by leaf and operand, give-ups, errors, kicks,
KVM bugs, stalls, a dead VM, memory-fault exits, zero-step activations, and any record
kind this module does not know yet, by its name (and by the `result` or `action` it
carries). `--check` writes nothing and exits 1 when the page is not what the files give
(tests/engine/test_gallery.py does the same); an invalid file is named with its errors
(exit 2).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine import status
from engine.errors import ScenarioError
from engine.records import (
    CALL_KINDS,
    CONTROL,
    ERROR,
    GIVEUP,
    HP_TIMEOUT,
    KICK,
    KVM_BUG,
    MEMORY_FAULT,
    STALL,
    SUCCESS,
    VM_DEAD,
    ZERO_STEP,
    ZERO_STEP_ARMED,
    Record,
)
from engine.run import records
from engine.scenario import Scenario, load
from engine.script import INVALIDATE, MEMSLOT, SIGNAL
from engine.sim import Simulation

COMMAND = "python -m engine.gallery"
# Happenings the file itself schedules (and live controls): they tell nothing new.
_QUIET = frozenset((CONTROL, INVALIDATE, SIGNAL, MEMSLOT))
_BUSY_LABEL = {status.TDX_OPERAND_BUSY: "",
               status.TDX_PREVIOUS_TLB_EPOCH_BUSY: "PREVIOUS_TLB_EPOCH_BUSY ",
               status.TDX_OPERAND_BUSY_HOST_PRIORITY: "BUSY_HOST_PRIORITY "}
# Status classes by name (engine.status), for the errors a run met.
_STATUS_NAMES = {value: name for name, value in vars(status).items()
                 if name.startswith("TDX_") and isinstance(value, int)
                 and value & 0xFFFFFFFF == 0 and value}
MOST_GROUPS = 4  # BUSY groups named on one line; the rest are summed


@dataclass
class Outcome:
    """What one run of a file under one policy showed, counted from its records."""

    calls: int = 0
    retries: int = 0
    busy: Counter[tuple[str, str]] = field(default_factory=Counter)  # (label, leaf)
    giveups: Counter[str] = field(default_factory=Counter)  # by leaf
    errors: Counter[tuple[str, str]] = field(default_factory=Counter)  # (status, leaf)
    kvm_bugs: Counter[str] = field(default_factory=Counter)  # by leaf
    stalls: list[str] = field(default_factory=list)
    vm_dead: list[str] = field(default_factory=list)
    memory_faults: Counter[str] = field(default_factory=Counter)  # by action
    kinds: Counter[str] = field(default_factory=Counter)  # every other record kind
    # A kind this module does not know, by the `result` or `action` its records carry.
    details: Counter[tuple[str, str]] = field(default_factory=Counter)
    synthetic_exits: int = 0
    injected: int = 0  # BUSY statuses returned by workload.inject_busy_every, not the module
    leaked_pages: int = 0

    def add(self, rec: Record) -> None:
        kind = rec[2]
        extra: dict[str, Any] = rec[9] or {}
        if kind in CALL_KINDS:
            self._call(rec, extra)
        elif kind == KVM_BUG:
            self.kvm_bugs[rec[4] or "?"] += 1
        elif kind == STALL:
            self.stalls.append(f"{rec[3]} waits on {', '.join(extra.get('waits_on', []))} "
                               f"({extra.get('why', '')})")
        elif kind == VM_DEAD:
            self.vm_dead.append(str(extra.get("reason", "")))
        elif kind == MEMORY_FAULT:
            self.memory_faults[str(extra.get("action", ""))] += 1
        elif kind not in _QUIET:
            self.kinds[kind] += 1
            detail = str(extra.get("result", extra.get("action", "")))
            if detail and extra.get("ioctl"):  # an ioctl's return: name it with its result
                detail = f"{extra['ioctl']} -> {detail}"
            if detail:
                self.details[(kind, detail)] += 1

    def _call(self, rec: Record, extra: dict[str, Any]) -> None:
        leaf, rax, outcome = rec[4], rec[5], rec[8]
        self.calls += 1
        if rec[7] is not None and rec[7] > 1:
            self.retries += 1
        if extra.get("synthetic"):
            self.synthetic_exits += 1
        if extra.get("injected"):
            self.injected += 1
        if outcome == ERROR:
            name = _STATUS_NAMES.get(rax & status.STATUS_CLASS_MASK, status.status_hex(rax))
            self.errors[(name, leaf)] += 1
        elif outcome != SUCCESS:
            label = _BUSY_LABEL.get(rax & status.STATUS_CLASS_MASK, "")
            self.busy[(label + (rec[6] or "?"), leaf)] += 1
            if outcome == GIVEUP:
                self.giveups[leaf] += 1

    def line(self) -> str:
        """The run in one line: the counts that are not zero."""
        parts = [_plural(self.calls, "attempt")]
        if self.busy:
            groups = self.busy.most_common()
            named = [f"{n} {label} on {leaf}" for (label, leaf), n in groups[:MOST_GROUPS]]
            rest = sum(n for _, n in groups[MOST_GROUPS:])
            parts.append("BUSY " + ", ".join(named) + (f", {rest} more" if rest else ""))
        else:
            parts.append("no BUSY")
        if self.injected:
            parts.append(f"{self.injected} of them injected")
        if self.retries:
            parts.append(_plural(self.retries, "retry", "retries"))
        if self.giveups:
            parts.append("give-ups: " + _counts(self.giveups))
        if self.errors:
            parts.append("errors: " + ", ".join(
                f"{n} {name} on {leaf}" for (name, leaf), n in sorted(self.errors.items())))
        if self.kinds[KICK]:
            parts.append(_plural(self.kinds[KICK], "kick"))
        if self.kvm_bugs:
            parts.append(f"KVM bugs: {_counts(self.kvm_bugs)}")
        parts += [f"stall: {s}" for s in self.stalls]
        parts += [f"VM dead: {why}" for why in self.vm_dead]
        if self.memory_faults:
            parts.append("memory-fault exits: " + ", ".join(
                f"{n} {action}" for action, n in sorted(self.memory_faults.items())))
        if self.kinds[ZERO_STEP_ARMED]:
            parts.append(f"zero-step armed {self.kinds[ZERO_STEP_ARMED]}x")
        if self.kinds[ZERO_STEP]:
            parts.append(_plural(self.kinds[ZERO_STEP], "zero-step activation"))
        if self.synthetic_exits:
            parts.append(_plural(self.synthetic_exits, "synthetic EPT exit"))
        if self.kinds[HP_TIMEOUT]:
            parts.append(_plural(self.kinds[HP_TIMEOUT], "host-priority timeout"))
        if self.leaked_pages:
            parts.append(_plural(self.leaked_pages, "leaked page"))
        known = {KICK, ZERO_STEP_ARMED, ZERO_STEP, HP_TIMEOUT}
        parts += [self._other(kind, n) for kind, n in sorted(self.kinds.items())
                  if kind not in known and n]
        return "; ".join(parts)


    def _other(self, kind: str, n: int) -> str:
        """A record kind of a later feature: its count, or its counts by result."""
        by = sorted((detail, m) for (k, detail), m in self.details.items() if k == kind)
        if not by:
            return f"{n} {kind}"
        rest = n - sum(m for _, m in by)
        return f"{kind}: " + ", ".join([f"{m} {d}" for d, m in by] + ([f"{rest} other"]
                                                                        if rest else []))


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{n} {key}" for key, n in sorted(counter.items()))


def _plural(n: int, what: str, many: str = "") -> str:
    return f"{n} {what if n == 1 else many or what + 's'}"


def policies_of(scenario: Scenario) -> tuple[str, ...]:
    """The policies the gallery runs a file under: its list, else its own."""
    return scenario.policies or (scenario.config().policy,)


def gallery_ns(scenario: Scenario) -> int:
    """The simulated time the gallery runs a file for: `gallery_duration_us`, else its
    `duration_us`."""
    return (scenario.gallery_duration_us or scenario.duration_us) * 1000


def outcome(scenario: Scenario, policy: str) -> Outcome:
    """Run `scenario` under `policy` for its gallery time and count what happened."""
    sims: list[Simulation] = []
    out = Outcome()
    for rec in records(scenario.config(policy=policy), scenario, gallery_ns(scenario),
                       sim_out=sims):
        out.add(rec)
    out.leaked_pages = sims[0].stats["leaked_pages"] if sims else 0
    return out


def entries(examples: Path) -> list[tuple[Path, Scenario]]:
    """Every scenario file of the directory, by file name."""
    return [(path, load(path)) for path in sorted(examples.glob("*.toml"))]


def render(examples: Path, root: Path | None = None) -> str:
    """The gallery page for the files in `examples` (paths shown relative to `root`)."""
    root = root if root is not None else examples.parent
    lines = [
        "# Race gallery",
        "",
        f"Generated by `{COMMAND}` from every `examples/*.toml`: do not edit it by hand.",
        "`tests/engine/test_gallery.py` fails when this page and the files disagree.",
        "",
        "Each file is one race from a kernel thread or the TDX module source. It runs for its",
        "`duration_us` (or a shorter `gallery_duration_us`) under each policy of its top-level",
        "`policies` list (default: its `[td]` policy), with its own seed; each line counts what",
        "that run's event log holds (only what is not zero). Reproduce a line with the command",
        "under its section. Format of the files: [scenario-format.md](scenario-format.md).",
    ]
    for path, scenario in entries(examples):
        lines += _section(_shown(path, root), scenario)
    return "\n".join(lines) + "\n"


def _shown(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:  # outside the root: as given
        return path.as_posix()


def _section(rel: str, scenario: Scenario) -> list[str]:
    config = scenario.config()
    us = gallery_ns(scenario) // 1000
    lines = ["", f"## {scenario.name}", "", f"`{rel}`: {scenario.description}.", "",
             f"Source: {scenario.source or '(none given)'}", "",
             f"{us} us simulated, {config.vcpus} vCPU{'s' if config.vcpus != 1 else ''}, "
             f"module {config.module_version}, seed {config.seed}:", ""]
    for policy in policies_of(scenario):
        lines.append(f"- `{policy}`: {outcome(scenario, policy).line()}")
    lines += ["", "```", f"tdx-contention run --scenario-file {rel} --policy "
              f"{policies_of(scenario)[0]} --duration-us {us} --export log.jsonl", "```"]
    return lines


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=Path, default=Path("examples"),
                        help="the directory of scenario files (default: examples)")
    parser.add_argument("--out", type=Path, default=Path("docs/gallery.md"),
                        help="the page to write (default: docs/gallery.md)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 when the page differs from the files")
    args = parser.parse_args(list(argv) if argv is not None else None)
    if not args.examples.is_dir():
        parser.error(f"--examples: {args.examples} is not a directory")
    try:
        page = render(args.examples, Path.cwd())
    except ScenarioError as exc:
        sys.stderr.write("\n".join(exc.messages) + "\n")
        return 2
    if args.check:
        same = args.out.is_file() and args.out.read_text(encoding="utf-8") == page
        if not same:
            sys.stderr.write(f"{args.out} is out of date: run `{COMMAND}`\n")
        return 0 if same else 1
    args.out.write_text(page, encoding="utf-8")
    sys.stdout.write(f"wrote {args.out}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
