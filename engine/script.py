"""Scripts: the steps of a scenario file's `[[vcpu]]` scripts and its host actors.

A scenario file may give a vCPU an ordered list of steps instead of the stochastic
workload, and may add host actors (zaps, invalidation windows, signals, memslot
deletions). This module holds the accepted keys (module-level tables, which the format's
reference is tested against), the parsers that check them and collect every problem,
the parsed specs (frozen, comparable), the `ScriptGuest` that turns steps into guest
operations, and the actors that act on a running simulation.

GPAs in files are byte addresses; the engine works in page numbers (gpa >> 12).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Union

from engine.buildvcpu import InitVcpuSpec, parse_init_vcpu
from engine.guest import (
    ACCEPT,
    ACCESS,
    ATTR_RD,
    ATTR_WR,
    HLT,
    IO,
    STOP,
    VE_HANDLERS,
    Guest,
    Layout,
    Op,
    StochasticGuest,
)
from engine.huge import accept_level
from engine.params import Workload
from engine.prefault import PrefaultSpec, parse_prefault

if TYPE_CHECKING:
    from engine.attributes import AttributesSpec

PAGE_SHIFT = 12
PAGE_BYTES = 1 << PAGE_SHIFT
DEFAULT_RIP = 0xFFFF_FFFF_8100_0000  # where a script starts before its first `rip`
MAX_RIP = (1 << 64) - 1
MAX_REPEAT = 1_000_000
MAX_TIME_US = 10_000_000_000  # the longest run a file may ask for
MAX_NS = MAX_TIME_US * 1000

# -- accepted keys (the format's reference is checked against these tables) ----------------
VCPU_KEYS = ("index", "indices", "ve_on_pending", "memory_fault", "host_delay_ns", "jitter_ns",
             "script", "ve_handler")
MEMORY_FAULT_KEYS = ("ignore",)
STEP_COMMON_KEYS = ("step", "repeat")
# Step kind -> (required keys, optional keys), besides `step` and `repeat`.
STEP_KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "access": (("gpa",), ("rip", "pages", "private")),
    "accept": (("gpa",), ("rip", "level")),
    "io": ((), ("rip",)),
    "hlt": (("hold_ns",), ("rip",)),
    "run": (("ns",), ()),
    "rip": (("rip",), ()),
    "loop": (("gpa_start", "pages"), ("rip", "private")),
    "attr_rd": (("gpa",), ("rip", "hold_ns")),  # TDG.MEM.PAGE.ATTR.RD (engine.guestrun)
    "attr_wr": (("gpa",), ("rip", "hold_ns")),  # TDG.MEM.PAGE.ATTR.WR
}
_ATTR_OPS = {"attr_rd": ATTR_RD, "attr_wr": ATTR_WR}
# Host-actor table -> (required keys, optional keys).
ACTOR_KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "shared": (("gpa",), ("pages",)),
    "zap": (("gpa",), ("pages", "at_us", "every_us", "start_us", "batch_pages",
                       "demote_ignores_busy")),
    "invalidate": (("gpa", "at_us", "duration_us"), ("pages", "zap")),
    "signal": (("vcpu", "every_us"), ("start_us", "count")),
    "memslot": (("gpa", "delete_at_us", "recreate_after_us"), ("pages",)),
    "prefault": (("gpa", "at_us"), ("pages", "retry_us")),
    "init_vcpu": ((), ("start_us", "tdcx_pages", "measure")),
    "attributes": (("gpa", "every_us"), ("pages", "start_us", "count")),  # engine.attributes
}
NO_GPA_TABLES = ("signal", "init_vcpu")  # actor tables without a `gpa` range
ARRAY_TABLES = ("vcpu",) + tuple(ACTOR_KEYS)

# Record kinds written by the actors here (instants: dur_ns 0).
INVALIDATE, SIGNAL, MEMSLOT = "invalidate", "signal", "memslot"


# -- parsed specs ------------------------------------------------------------------------
class Step(NamedTuple):
    """One script step. `page`/`pages` in pages; `ns` is `hold_ns` or `run`'s `ns`."""

    kind: str
    repeat: int = 1
    rip: int | None = None
    page: int = 0
    pages: int = 1
    private: bool = True
    ns: int = 0


@dataclass(frozen=True)
class VcpuSpec:
    """A `[[vcpu]]` table: which vCPUs, how their guest and userspace behave."""

    indices: tuple[int, ...]
    ve_on_pending: bool = True
    memory_fault_ignore: int = 0
    script: tuple[Step, ...] | None = None  # None: the stochastic workload
    host_delay_ns: int = 0  # the vCPU thread is preempted this long before each SEAMCALL
    jitter_ns: int = 0  # a script's guest time before each operation gets 0..jitter_ns more
    ve_handler: int = 0  # engine.guest.VE_HANDLERS index: what its #VE handler does


@dataclass(frozen=True)
class ZapSpec:
    lo: int
    hi: int
    batch_pages: int
    times_ns: tuple[int, ...] = ()
    every_ns: int = 0
    start_ns: int = 0
    demote_ignores_busy: bool = False  # the v19-era split path (engine.huge)


@dataclass(frozen=True)
class InvalidateSpec:
    lo: int
    hi: int
    times_ns: tuple[int, ...]
    duration_ns: int
    zap: bool = False  # zap the range's mapped pages as the window opens (a hole punch)


@dataclass(frozen=True)
class SignalSpec:
    vcpu: int
    every_ns: int
    start_ns: int
    count: int = 0  # 0: until the run ends


@dataclass(frozen=True)
class MemslotSpec:
    lo: int
    hi: int
    delete_ns: int
    recreate_after_ns: int


ActorSpec = Union[ZapSpec, InvalidateSpec, SignalSpec, MemslotSpec, PrefaultSpec,  # noqa: UP007
                  InitVcpuSpec, "AttributesSpec"]


# -- checking ----------------------------------------------------------------------------
class Checker:
    """Collects error messages of the form `file: key: what is accepted`."""

    def __init__(self, where: str, errors: list[str], memory_pages: int, vcpus: int | None) -> None:
        self.where = where
        self.errors = errors
        self.memory_pages = memory_pages
        self.vcpus = vcpus  # td.vcpus when the file sets it

    def err(self, key: str, message: str) -> None:
        self.errors.append(f"{self.where}: {key}: {message}")

    def keys(self, table: Any, path: str, required: tuple[str, ...], optional: tuple[str, ...],
             what: str = "") -> dict[str, Any] | None:
        """The table if it is one; reports unknown and missing keys."""
        if not isinstance(table, dict):
            self.err(path, "must be a table")
            return None
        accepted = required + optional
        for key in table:
            if key not in accepted:
                self.err(f"{path}.{key}", f"unknown key{what}; accepted: {', '.join(accepted)}")
        for key in required:
            if key not in table:
                self.err(f"{path}.{key}", f"missing{what}: this key is required")
        return table

    def integer(self, table: dict[str, Any], key: str, path: str, lo: int, hi: int,
                default: int) -> int:
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            self.err(f"{path}.{key}", f"must be an integer from {lo} to {hi}")
            return default
        return value

    def boolean(self, table: dict[str, Any], key: str, path: str, default: bool) -> bool:
        value = table.get(key, default)
        if not isinstance(value, bool):
            self.err(f"{path}.{key}", "must be true or false")
            return default
        return value

    def address(self, table: dict[str, Any], key: str, path: str, hi: int) -> int | None:
        """An int or a hex string ("0x1000") from 0 to hi."""
        value = table.get(key)
        if isinstance(value, str):
            try:
                value = int(value, 16) if value.lower().startswith("0x") else int(value, 10)
            except ValueError:
                value = None
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= hi:
            self.err(f"{path}.{key}", f"must be an address from 0 to {hi:#x}: an integer or "
                                      'a hex string such as "0x7fff0000"')
            return None
        return value

    def gpa_range(self, table: dict[str, Any], key: str, path: str, pages_key: str = "pages",
                  pages_required: bool = False) -> tuple[int, int] | None:
        """A page-aligned GPA and a page count as a (lo, hi) page range inside guest memory."""
        if key not in table:
            return None
        limit = self.memory_pages << PAGE_SHIFT
        gpa = self.address(table, key, path, MAX_RIP)
        pages = self.integer(table, pages_key, path, 1, self.memory_pages, 1)
        if gpa is None:
            return None
        if gpa % PAGE_BYTES:
            self.err(f"{path}.{key}", f"{gpa:#x} is not page-aligned; accepted: a byte address "
                                      f"that is a multiple of {PAGE_BYTES:#x} (4 KiB pages)")
            return None
        lo = gpa >> PAGE_SHIFT
        if lo + pages > self.memory_pages:
            self.err(f"{path}.{key}", f"{gpa:#x} + {pages} page(s) ends beyond the guest's "
                                      f"memory (workload.td_memory_mib = {self.memory_pages // 256}"
                                      f"); accepted: GPAs below {limit:#x}")
            return None
        return lo, lo + pages

    def times_ns(self, table: dict[str, Any], key: str, path: str) -> tuple[int, ...]:
        """`key` as an integer or a list of integers of microseconds, in nanoseconds."""
        value = table.get(key, [])
        values = [value] if isinstance(value, int) and not isinstance(value, bool) else value
        if not isinstance(values, list) or not all(
                isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_TIME_US
                for v in values):
            self.err(f"{path}.{key}", f"must be a time in microseconds or a list of them, "
                                      f"each an integer from 0 to {MAX_TIME_US}")
            return ()
        if not values:
            self.err(f"{path}.{key}", "must name at least one time")
        return tuple(sorted(v * 1000 for v in values))

    def vcpu_index(self, value: Any, key: str) -> int | None:
        top = (self.vcpus if self.vcpus is not None else 512) - 1
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
            told = f" (td.vcpus = {self.vcpus})" if self.vcpus is not None else ""
            self.err(key, f"must be a vCPU index from 0 to {top}{told}")
            return None
        return value


# -- parsing -----------------------------------------------------------------------------
def array(data: dict[str, Any], key: str, check: Checker) -> list[Any]:
    value = data.get(key, [])
    if not isinstance(value, list):
        check.err(key, f"must be an array of tables, written [[{key}]]")
        return []
    return value


def parse_vcpus(data: dict[str, Any], check: Checker) -> tuple[VcpuSpec, ...]:
    """Every `[[vcpu]]` table; a vCPU may be named by one table only."""
    specs: list[VcpuSpec] = []
    owner: dict[int, str] = {}
    for n, raw in enumerate(array(data, "vcpu", check)):
        path = f"vcpu[{n}]"
        table = check.keys(raw, path, (), VCPU_KEYS)
        if table is None:
            continue
        indices = _indices(table, path, check)
        for i in indices:
            if i in owner:
                check.err(f"{path}.index", f"vCPU {i} already has a table ({owner[i]}); "
                                           "accepted: each vCPU in one [[vcpu]] table")
            owner.setdefault(i, path)
        ve = check.boolean(table, "ve_on_pending", path, True)
        ignore = 0
        if "memory_fault" in table:
            mf = check.keys(table["memory_fault"], f"{path}.memory_fault", (), MEMORY_FAULT_KEYS)
            if mf is not None:
                ignore = check.integer(mf, "ignore", f"{path}.memory_fault", 0, MAX_REPEAT, 0)
        script = None
        if "script" in table:
            script = parse_script(table["script"], f"{path}.script", check)
        delay = check.integer(table, "host_delay_ns", path, 0, MAX_NS, 0)
        jitter = check.integer(table, "jitter_ns", path, 0, MAX_NS, 0)
        if jitter and script is None:
            check.err(f"{path}.jitter_ns", "only goes with `script` (the stochastic workload "
                                           "draws its guest times already)")
        handler = table.get("ve_handler", VE_HANDLERS[0])
        if handler not in VE_HANDLERS:
            check.err(f"{path}.ve_handler", f"{handler!r}; accepted: {', '.join(VE_HANDLERS)}")
            handler = VE_HANDLERS[0]
        specs.append(VcpuSpec(indices, ve, ignore, script, delay, jitter,
                              VE_HANDLERS.index(handler)))
    return tuple(specs)


def _indices(table: dict[str, Any], path: str, check: Checker) -> tuple[int, ...]:
    if ("index" in table) == ("indices" in table):
        check.err(path, "needs exactly one of `index` (one vCPU) or `indices` (a list)")
        return ()
    if "index" in table:
        i = check.vcpu_index(table["index"], f"{path}.index")
        return () if i is None else (i,)
    raw = table["indices"]
    if not isinstance(raw, list) or not raw:
        check.err(f"{path}.indices", "must be a non-empty list of vCPU indices")
        return ()
    out = [check.vcpu_index(v, f"{path}.indices[{k}]") for k, v in enumerate(raw)]
    return tuple(sorted({i for i in out if i is not None}))


def parse_script(raw: Any, path: str, check: Checker) -> tuple[Step, ...]:
    if not isinstance(raw, list):
        check.err(path, "must be a list of steps: [{step = \"access\", ...}, ...]")
        return ()
    return tuple(step for n, item in enumerate(raw)
                 if (step := parse_step(item, f"{path}[{n}]", check)) is not None)


def parse_step(raw: Any, path: str, check: Checker) -> Step | None:
    if not isinstance(raw, dict):
        check.err(path, "must be a table such as {step = \"io\", rip = \"0x1000\"}")
        return None
    kind = raw.get("step")
    if kind not in STEP_KEYS:
        check.err(f"{path}.step", f"{'missing' if kind is None else repr(kind)}; "
                                  f"accepted: {', '.join(STEP_KEYS)}")
        return None
    required, optional = STEP_KEYS[kind]
    if check.keys(raw, path, required, STEP_COMMON_KEYS + optional, f" for step {kind!r}") is None:
        return None
    if any(key not in raw for key in required):
        return None
    repeat = check.integer(raw, "repeat", path, 1, MAX_REPEAT, 1)
    rip = check.address(raw, "rip", path, MAX_RIP) if "rip" in raw else None
    private = check.boolean(raw, "private", path, True)
    if kind in ("access", "accept", "loop") or kind in _ATTR_OPS:
        key = "gpa_start" if kind == "loop" else "gpa"
        hold = check.integer(raw, "hold_ns", path, 0, MAX_NS, 0)
        span = check.gpa_range(raw, key, path)
        if span is None:
            return None
        if kind == "accept" and "level" in raw:
            span = accept_level(raw, path, check, span)  # engine.huge: a 2M accept
            if span is None:
                return None
        return Step(kind, repeat, rip, span[0], span[1] - span[0], private, hold)
    ns = 0
    if kind in ("hlt", "run"):
        ns = check.integer(raw, "hold_ns" if kind == "hlt" else "ns", path, 0, MAX_NS, 0)
    return Step(kind, repeat, rip, ns=ns)


def parse_actors(data: dict[str, Any], check: Checker) -> tuple[tuple[tuple[int, int], ...],
                                                                 tuple[ActorSpec, ...]]:
    """The `[[shared]]` ranges, then every host actor in file order, table by table."""
    shared: list[tuple[int, int]] = []
    actors: list[ActorSpec] = []
    from engine.attributes import parse_attributes  # it imports this module's Checker

    parsers = {**_ACTOR_PARSERS, "attributes": parse_attributes}
    for name, (required, optional) in ACTOR_KEYS.items():
        for n, raw in enumerate(array(data, name, check)):
            path = f"{name}[{n}]"
            table = check.keys(raw, path, required, optional)
            if table is None:
                continue
            span = check.gpa_range(table, "gpa", path) if name not in NO_GPA_TABLES else (0, 0)
            spec = parsers[name](table, path, check, span)
            if span is None or spec is None:
                continue
            if name == "shared":
                shared.append(span)
            else:
                actors.append(spec)
    return tuple(shared), tuple(actors)


def _shared(t: dict[str, Any], path: str, check: Checker, span: Any) -> Any:
    return span


def _zap(t: dict[str, Any], path: str, check: Checker, span: Any) -> ZapSpec | None:
    if ("at_us" in t) == ("every_us" in t):
        check.err(path, "needs exactly one of `at_us` (times) or `every_us` (a rate)")
        return None
    if "start_us" in t and "every_us" not in t:
        check.err(f"{path}.start_us", "only goes with `every_us`")
    pages = span[1] - span[0] if span else 1
    batch = check.integer(t, "batch_pages", path, 1, max(pages, 1), pages)
    ignores = check.boolean(t, "demote_ignores_busy", path, False)
    if "at_us" in t:
        times = check.times_ns(t, "at_us", path)
        return ZapSpec(span[0], span[1], batch, times_ns=times,
                       demote_ignores_busy=ignores) if span and times else None
    every = check.integer(t, "every_us", path, 1, MAX_TIME_US, 1)
    start = check.integer(t, "start_us", path, 0, MAX_TIME_US, every)
    return ZapSpec(span[0], span[1], batch, every_ns=every * 1000, start_ns=start * 1000,
                   demote_ignores_busy=ignores) if span else None


def _invalidate(t: dict[str, Any], path: str, check: Checker, span: Any) -> InvalidateSpec | None:
    times = check.times_ns(t, "at_us", path)
    duration = check.integer(t, "duration_us", path, 1, MAX_TIME_US, 1)
    zap = check.boolean(t, "zap", path, False)
    return InvalidateSpec(span[0], span[1], times, duration * 1000, zap) if span and times else None


def _signal(t: dict[str, Any], path: str, check: Checker, span: Any) -> SignalSpec | None:
    vcpu = check.vcpu_index(t.get("vcpu"), f"{path}.vcpu")
    every = check.integer(t, "every_us", path, 1, MAX_TIME_US, 1)
    start = check.integer(t, "start_us", path, 0, MAX_TIME_US, every)
    count = check.integer(t, "count", path, 1, MAX_REPEAT, 0) if "count" in t else 0
    return None if vcpu is None else SignalSpec(vcpu, every * 1000, start * 1000, count)


def _memslot(t: dict[str, Any], path: str, check: Checker, span: Any) -> MemslotSpec | None:
    delete = check.integer(t, "delete_at_us", path, 0, MAX_TIME_US, 0)
    after = check.integer(t, "recreate_after_us", path, 1, MAX_TIME_US, 1)
    return MemslotSpec(span[0], span[1], delete * 1000, after * 1000) if span else None


_ACTOR_PARSERS: dict[str, Any] = {"shared": _shared, "zap": _zap, "invalidate": _invalidate,
                                  "signal": _signal, "memslot": _memslot,
                                  "prefault": parse_prefault, "init_vcpu": parse_init_vcpu}


# -- guests ------------------------------------------------------------------------------
class ScriptGuest:
    """A guest that runs its script's steps in order, then stops for good (Op kind STOP).

    With `jitter_ns`, each operation's guest time gets a uniform 0..jitter_ns more, drawn
    from the run's generator, so fixed latencies cannot phase-lock scripted vCPUs."""

    __slots__ = ("_ops", "_stop", "_jitter_ns", "_rng")

    def __init__(self, steps: tuple[Step, ...], ve_on_pending: bool = True,
                 jitter_ns: int = 0, rng: random.Random | None = None) -> None:
        self._ops = _ops(steps, ve_on_pending)
        self._stop = Op(0, STOP, DEFAULT_RIP, ())
        self._jitter_ns = jitter_ns
        self._rng = rng if rng is not None else random.Random(0)

    def next_op(self) -> Op:
        op = next(self._ops, self._stop)
        if self._jitter_ns and op.kind != STOP:
            return op._replace(run_ns=op.run_ns + self._rng.randint(0, self._jitter_ns))
        return op


def _ops(steps: tuple[Step, ...], ve: bool) -> Iterator[Op]:
    """The operations of a script, made lazily (a step may repeat a million times)."""
    rip = DEFAULT_RIP
    run_ns = 0  # guest time owed by `run` steps, paid before the next operation
    for step in steps:
        kind = step.kind
        for _ in range(step.repeat):
            if step.rip is not None:
                rip = step.rip
            if kind == "run":
                run_ns += step.ns
                continue
            if kind == "rip":
                continue
            if kind == "access":
                gpas = tuple(range(step.page, step.page + step.pages)) if step.private else ()
                yield Op(run_ns, ACCESS, rip, gpas, ve)
            elif kind == "accept":  # `pages` 512: at the 2M level (engine.huge.LEVEL_2M)
                yield Op(run_ns, ACCEPT, rip, (step.page,), ve, int(step.pages > 1))
            elif kind in _ATTR_OPS:
                yield Op(run_ns, _ATTR_OPS[kind], rip, (step.page,), ve, step.ns)
            elif kind == "io":
                yield Op(run_ns, IO, rip, ())
            elif kind == "hlt":
                yield Op(run_ns, HLT, rip, (), ve, step.ns)
            else:  # loop: one access per page, all at one RIP
                for page in range(step.page, step.page + step.pages):
                    yield Op(run_ns, ACCESS, rip, (page,) if step.private else (), ve)
                    run_ns = 0
            run_ns = 0
    yield Op(run_ns, STOP, rip, ())


class NoVeGuest:
    """The stochastic guest of a vCPU whose PENDING-page accesses exit instead of a #VE."""

    __slots__ = ("inner",)

    def __init__(self, inner: Guest) -> None:
        self.inner = inner

    def next_op(self) -> Op:
        op = self.inner.next_op()
        return op._replace(ve=False) if op.kind == ACCESS else op


def make_guest(spec: VcpuSpec | None, workload: Workload, layout: Layout, index: int,
               rng: random.Random) -> Guest:
    if spec is not None and spec.script is not None:
        return ScriptGuest(spec.script, spec.ve_on_pending, spec.jitter_ns, rng)
    guest = StochasticGuest(workload, layout, index, rng)
    if spec is not None and not spec.ve_on_pending:
        return NoVeGuest(guest)
    return guest
