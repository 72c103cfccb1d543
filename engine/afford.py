"""Affordability: what a scenario would cost a run in memory and events, refused up front.

A scenario file is data from anyone (a posted file, a file on the command line), and a
few of its keys multiply into work: guest memory is one byte per page in four page
tables, a multi-GFN instruction holds one tuple of its GFNs per vCPU, a zero-cost
timing lets events pile up at one simulated instant, a zap thread with no interval
begins batch after batch without time passing. `check` estimates a run's memory and its
events per simulated microsecond from the keys and refuses, naming the key, what no
machine here could afford; `check_source` refuses text too big or too deeply nested to
be worth parsing. Estimates are upper bounds of the engine's own data, not of Python's
heap: generous by design, so that no sensible scenario is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Final

from engine.attributes import AttributesSpec
from engine.buildvcpu import InitVcpuSpec
from engine.errors import ScenarioError
from engine.guest import PAGES_PER_MIB, REGION_PAGES
from engine.prefault import PrefaultSpec
from engine.script import SignalSpec, ZapSpec

if TYPE_CHECKING:
    from engine.scenario import Scenario

MAX_SOURCE_BYTES: Final = 256 * 1024  # a scenario file; the built-ins are about 1 KiB
MAX_NESTING: Final = 32  # brackets and braces; a scenario needs 3, a config body 1
MAX_KEY_PARTS: Final = 32  # a.b.c: tomllib's cost grows with the square of a key's parts
MAX_DESCRIPTION_CHARS: Final = 1_000
MAX_RUN_BYTES: Final = 256 * 1024 * 1024  # the engine's data for one simulation
MAX_EVENTS_PER_US: Final = 20_000  # the engine does about 1M a second: 20 ms per us
MAX_FREE_OPS: Final = 1_000_000  # script operations that may take no simulated time
MIN_ZAP_INTERVAL_NS: Final = 1_000
BYTES_PER_PAGE: Final = 4  # page states, shared attribute, SEPT entry lock, page lock
BYTES_PER_GFN: Final = 40  # an int object and its slot in a tuple
BYTES_PER_RECORD: Final = 200  # a record tuple held while an earlier VP.ENTER is open
BYTES_PER_VCPU: Final = 16_384
RECORDS_PER_EXIT: Final = 4  # VP.ENTER, AUG, SEPT.ADD, ACCEPT
HELD_MARGIN: Final = 4
OPEN_TAIL: Final = 10  # an exponential stretch's longest draw, in means (e^-10 per draw)
DEFAULT_VCPUS: Final = 8


def nesting_depth(text: str, limit: int = MAX_NESTING) -> int:
    """The deepest nesting of [ ] and { } outside strings and comments (JSON or TOML),
    scanning no further than where it first exceeds `limit`: the parsers recurse per
    level, so this runs before them."""
    depth = deepest = 0
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return deepest
        elif c in "]}":
            depth = max(0, depth - 1)
        elif c == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif c in "\"'":
            i = _string_end(text, i)
            continue
        i += 1
    return deepest


def longest_key(text: str, limit: int = MAX_KEY_PARTS) -> int:
    """The most parts of a dotted TOML key (`a.b.c` has 3) in key position: before `=`, in
    a [table] header, after `{` or `,` in an inline table; dots in values (1.5, dates)
    are not counted. Stops once past `limit`."""
    stack: list[str] = []  # "[" array or header, "{" inline table
    in_key = True
    parts = longest = 1
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in "\"'":
            i = _string_end(text, i)
            continue
        if c == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        if c == "\n" and not stack:
            in_key, parts = True, 1
        elif c == "=":
            in_key, parts = False, 1
        elif c == "{":
            stack.append(c)
            in_key, parts = True, 1
        elif c == "[":
            stack.append(c)  # a header keeps in_key (line start); an array value does not
        elif c in "]}":
            if stack:
                stack.pop()
            in_key = in_key and c == "]"
        elif c == ",":
            in_key, parts = bool(stack) and stack[-1] == "{", 1
        elif c == "." and in_key:
            parts += 1
            if parts > longest:
                longest = parts
                if longest > limit:
                    return longest
        i += 1
    return longest


def _string_end(text: str, i: int) -> int:
    """The index just past the string opening at `i` (basic, literal or multi-line)."""
    quote = text[i]
    if text.startswith(quote * 3, i):
        end = text.find(quote * 3, i + 3)
        return len(text) if end < 0 else end + 3
    j = i + 1
    while j < len(text) and text[j] not in (quote, "\n"):
        j += 2 if quote == '"' and text[j] == "\\" else 1
    return j + 1


def read_source(path: Path) -> str:
    """A scenario file's text, reading no more than the limit allows (a file on the command
    line may be /dev/zero); ScenarioError naming the file when it is too big or not UTF-8."""
    with open(path, "rb") as handle:  # OSError: the caller names the file
        data = handle.read(MAX_SOURCE_BYTES + 1)
    if len(data) > MAX_SOURCE_BYTES:
        raise ScenarioError([f"{path}: file: more than {MAX_SOURCE_BYTES} bytes; a scenario "
                             f"file may have at most {MAX_SOURCE_BYTES} bytes"])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScenarioError([f"{path}: file: not UTF-8 text ({exc.reason} at byte "
                             f"{exc.start})"]) from None


def check_source(text: str, where: str) -> None:
    """Refuse scenario text too big or too deeply nested to parse."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_SOURCE_BYTES:
        raise ScenarioError([f"{where}: file: {size} bytes; a scenario file may have at most "
                             f"{MAX_SOURCE_BYTES} bytes"])
    if nesting_depth(text) > MAX_NESTING:
        raise ScenarioError([f"{where}: file: nested more than {MAX_NESTING} levels deep "
                             f"(arrays and inline tables); refused before parsing"])
    if longest_key(text) > MAX_KEY_PARTS:
        raise ScenarioError([f"{where}: file: a dotted key of more than {MAX_KEY_PARTS} "
                             "parts; refused before parsing"])


def checked(scenario: Scenario, where: str) -> Scenario:
    """`scenario` after `check` with the vCPU count its own [td] table sets."""
    check(scenario, int(scenario.td.get("vcpus", DEFAULT_VCPUS)), where)
    return scenario


def check(scenario: Scenario, vcpus: int, where: str) -> None:
    """Refuse a run of `scenario` on `vcpus` vCPUs that costs more than a machine has;
    the message names the key that costs the most."""
    errors = [f"{where}: {key}: {message}" for key, message in problems(scenario, vcpus)]
    if errors:
        raise ScenarioError(errors)


def problems(scenario: Scenario, vcpus: int) -> list[tuple[str, str]]:
    """(key, what is wrong) for every limit the run would exceed."""
    out: list[tuple[str, str]] = []
    if len(scenario.description) > MAX_DESCRIPTION_CHARS:
        out.append(("description", f"{len(scenario.description)} characters; at most "
                                   f"{MAX_DESCRIPTION_CHARS}"))
    t, w = scenario.timing, scenario.workload
    if w.zap_pages and w.zap_interval_ns < MIN_ZAP_INTERVAL_NS:
        out.append(("workload.zap_interval_ns", f"{w.zap_interval_ns} ns with zap_pages "
                    f"{w.zap_pages}: batches would follow each other without simulated time "
                    f"passing; accepts at least {MIN_ZAP_INTERVAL_NS}"))
    if t.seamcall_ns + t.vp_entry_ns + t.td_exit_ns == 0 or t.seamcall_ns + t.retry_gap_ns == 0:
        out.append(("timing.seamcall_ns", "with vp_entry_ns, td_exit_ns and retry_gap_ns this "
                    "leaves a vCPU's calls costing no simulated time; accepts a sum above 0"))
    if t.kvm_fault_ns == 0:
        out.append(("timing.kvm_fault_ns", "0 ns: a fault run again (a frozen SPTE, an "
                    "invalidation window, upstream's local retry) would loop without "
                    "simulated time passing; accepts at least 1"))
    if t.seamcall_ns + t.reenter_gap_ns == 0 and any(
            isinstance(a, InitVcpuSpec) for a in scenario.actors):
        out.append(("timing.reenter_gap_ns", "with seamcall_ns 0 a build's PAGE.ADD called "
                    "again after -EBUSY would cost no simulated time; accepts a sum above 0"))
    if t.accept_ns + t.guest_retry_gap_ns == 0:
        out.append(("timing.accept_ns", "with guest_retry_gap_ns 0 a guest's retried ACCEPT "
                    "would cost no simulated time; accepts a sum above 0"))
    if t.seamcall_ns + t.guest_retry_gap_ns == 0:
        out.append(("timing.guest_retry_gap_ns", "with seamcall_ns 0 a guest TDCALL's BUSY "
                    "and its retry would cost no simulated time; accepts a sum above 0"))
    if t.ve_ns == 0 and any(spec.ve_handler for spec in scenario.vcpu_specs):
        out.append(("timing.ve_ns", "0 ns with a [[vcpu]] ve_handler that does not accept: "
                    "its #VE spin would cost no simulated time; accepts at least 1"))
    out += _free_ops(scenario)
    if out:
        return out  # the estimates below divide by the costs just checked
    events, events_key = events_per_us(scenario, vcpus)
    if events > MAX_EVENTS_PER_US:
        out.append((events_key, f"a run would make about {events:.0f} events per simulated "
                    f"microsecond on {vcpus} vCPUs; at most {MAX_EVENTS_PER_US}"))
        return out
    memory, memory_key = memory_bytes(scenario, vcpus, events)
    if memory > MAX_RUN_BYTES:
        out.append((memory_key, f"a run would need about {memory / 2**20:.0f} MiB on {vcpus} "
                    f"vCPUs; at most {MAX_RUN_BYTES // 2**20} MiB"))
    return out


def events_per_us(scenario: Scenario, vcpus: int) -> tuple[float, str]:
    """Records per simulated microsecond at most, and the key most of them come from."""
    w = scenario.workload
    parts = {"vcpus": _vcpu_rates(scenario, vcpus)[0],
             # every vCPU running its fault again in a loop, no record each time
             "timing.kvm_fault_ns": vcpus * 1000 / max(scenario.timing.kvm_fault_ns, 1)}
    pages = _pages(scenario, vcpus)
    if w.zap_pages:
        batch = min(w.zap_pages, pages)
        parts["workload.zap_pages"] = (3 * batch + 3) * 1000 / max(w.zap_interval_ns, 1)
    for n, actor in enumerate(scenario.actors):
        if isinstance(actor, ZapSpec) and actor.every_ns:
            batch = min(actor.batch_pages, actor.hi - actor.lo)
            parts[f"zap[{n}].every_us"] = (3 * batch + 3) * 1000 / actor.every_ns
        elif isinstance(actor, PrefaultSpec):
            # its fault loop (no record each run), and a record per userspace retry
            parts[f"prefault[{n}].retry_us"] = (1000 / max(scenario.timing.kvm_fault_ns, 1)
                                                + 1000 / actor.retry_ns)
        elif isinstance(actor, AttributesSpec):
            # each change zaps the range (BLOCK, TRACK, kick, REMOVE) and is recorded
            parts[f"attributes[{n}].every_us"] = (3 * (actor.hi - actor.lo) + 4) * 1000 / actor.every_ns
        elif isinstance(actor, SignalSpec):
            parts.setdefault("signal", 0.0)
            parts["signal"] += 2 * 1000 / max(actor.every_ns, 1)
    key = max(parts, key=lambda k: parts[k])
    return sum(parts.values()), key


def _vcpu_rates(scenario: Scenario, vcpus: int) -> tuple[float, float]:
    """The vCPUs' records per simulated microsecond: at most (every vCPU in a retry loop
    at its cheapest call) and typically (a few records per exit, an exit per guest run)."""
    t, w = scenario.timing, scenario.workload
    # Each attempt is one record and costs at least a SEAMCALL round trip (a TDCALL its
    # accept time), and a retry waits its gap first.
    floor_ns = min(t.seamcall_ns + t.retry_gap_ns, t.accept_ns + t.guest_retry_gap_ns,
                   t.seamcall_ns + t.vp_entry_ns + t.td_exit_ns)
    cycle_ns = t.seamcall_ns + t.vp_entry_ns + t.td_exit_ns + t.kvm_fault_ns
    if not scenario.vcpu_specs:  # scripts may fault back to back; the workload runs first
        cycle_ns += w.run_mean_ns
    return (vcpus * 1000 / max(floor_ns, 1),
            vcpus * RECORDS_PER_EXIT * 1000 / max(cycle_ns, 1))


def memory_bytes(scenario: Scenario, vcpus: int, events: float) -> tuple[int, str]:
    """The engine's data for one run in bytes at most, and the key that costs the most."""
    w = scenario.workload
    pages = _pages(scenario, vcpus)
    key_pages = ("workload.td_memory_mib" if w.td_memory_mib * PAGES_PER_MIB >= pages
                 else "vcpus")
    # Per 512-page region: its page table present, its frozen SPTE, its 2 MB leaf.
    parts = {key_pages: pages * BYTES_PER_PAGE + 3 * (pages // REGION_PAGES),
             "vcpus": vcpus * BYTES_PER_VCPU}
    if w.multi_gfn_fraction:
        parts["workload.multi_gfn_count"] = vcpus * w.multi_gfn_count * BYTES_PER_GFN
    for n, spec in enumerate(scenario.vcpu_specs):
        widest = max((s.pages for s in spec.script or () if s.kind == "access"), default=0)
        if widest:
            parts[f"vcpu[{n}].script"] = len(spec.indices) * widest * BYTES_PER_GFN
    # Records wait while an earlier VP.ENTER is open (its vCPU in the guest or halted),
    # so a long guest stretch holds everything the others make meanwhile.
    open_ns = OPEN_TAIL * max(w.run_mean_ns, w.hlt_mean_ns if w.hlt_weight else 0)
    open_key = "workload.run_mean_ns" if w.run_mean_ns >= w.hlt_mean_ns else "workload.hlt_mean_ns"
    for n, spec in enumerate(scenario.vcpu_specs):
        for step in spec.script or ():
            if step.kind in ("run", "hlt") and step.ns > open_ns:
                open_ns, open_key = step.ns, f"vcpu[{n}].script"
    # Held meanwhile: the host actors' records at their rate, the vCPUs' at a few times
    # their typical rate (a retry storm does not last a whole guest stretch).
    most, typical = _vcpu_rates(scenario, vcpus)
    held_rate = events - most + min(most, HELD_MARGIN * typical)
    parts[open_key] = int(held_rate * open_ns / 1000 * BYTES_PER_RECORD)
    key = max(parts, key=lambda k: parts[k])
    return sum(parts.values()), key


def _pages(scenario: Scenario, vcpus: int) -> int:
    """Guest pages, as engine.guest.Layout counts them."""
    return max(scenario.workload.td_memory_mib * PAGES_PER_MIB, 2 * REGION_PAGES * (vcpus + 1))


def _free_ops(scenario: Scenario) -> list[tuple[str, str]]:
    """Scripts whose operations could run with no simulated time passing: RIP changes,
    empty `run`s, shared accesses, and any access after a step's first pass (its pages
    are mapped by then); the guest takes them all inside one engine event."""
    out = []
    for n, spec in enumerate(scenario.vcpu_specs):
        free = 0
        for step in spec.script or ():
            width = step.pages if step.kind == "loop" else 1
            if step.kind == "rip" or (step.kind == "run" and step.ns == 0) or not step.private:
                free += step.repeat * width
            elif step.kind in ("access", "accept", "loop"):
                free += (step.repeat - 1) * width
            elif step.kind in ("attr_rd", "attr_wr") and not scenario.timing.seamcall_ns + step.ns:
                free += step.repeat
        if free > MAX_FREE_OPS:
            out.append((f"vcpu[{n}].script", f"about {free} operations that may take no "
                        f"simulated time (repeats of mapped pages, rip, empty run); at most "
                        f"{MAX_FREE_OPS}"))
    return out
