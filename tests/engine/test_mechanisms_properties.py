"""Properties of random scripted races (hypothesis): vCPUs fault a few shared GFNs while
invalidations, memslot deletions, zaps and signals come and go, under every policy."""

from __future__ import annotations

import io
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.config import POLICIES
from engine.run import run
from engine.scenario import parse
from tests.engine.support import logical_calls, recount

GPAS = ["0x10000", "0x11000", "0x12000", "0x200000", "0x201000"]  # two 2 MiB regions

steps = st.one_of(
    st.builds(lambda g, r: f'{{step = "access", rip = {r}, gpa = "{g}"}}',
              st.sampled_from(GPAS), st.integers(1, 4)),
    st.builds(lambda g: f'{{step = "accept", gpa = "{g}"}}', st.sampled_from(GPAS)),
    st.builds(lambda n: f'{{step = "run", ns = {n}}}', st.integers(0, 40_000)),
    st.just('{step = "io"}'),
)


@st.composite
def scenarios(draw: Any) -> str:
    vcpus = draw(st.integers(1, 3))
    parts = [f'name = "race"\ndescription = "a random race"\n[td]\nvcpus = {vcpus}\n',
             f'sept_ve_disable = {str(draw(st.booleans())).lower()}\n',
             "[workload]\ntd_memory_mib = 16\n"]
    for i in range(vcpus):
        script = ", ".join(draw(st.lists(steps, min_size=1, max_size=8)))
        delay = draw(st.sampled_from([0, 0, 3000, 20_000]))
        jitter = draw(st.sampled_from([0, 0, 2000]))
        ve = str(draw(st.booleans())).lower()
        parts.append(f"[[vcpu]]\nindex = {i}\nve_on_pending = {ve}\nhost_delay_ns = {delay}\n"
                     f"jitter_ns = {jitter}\nscript = [{script}]\n")
    if draw(st.booleans()):
        parts.append(f'[[invalidate]]\ngpa = "{draw(st.sampled_from(GPAS))}"\npages = 2\n'
                     f"at_us = {draw(st.integers(0, 50))}\nduration_us = {draw(st.integers(1, 80))}\n"
                     f"zap = {str(draw(st.booleans())).lower()}\n")
    if draw(st.booleans()):
        parts.append(f'[[memslot]]\ngpa = "0x10000"\npages = 16\n'
                     f"delete_at_us = {draw(st.integers(0, 100))}\n"
                     f"recreate_after_us = {draw(st.integers(1, 150))}\n")
    if draw(st.booleans()):
        parts.append(f'[[zap]]\ngpa = "0x200000"\npages = 2\nevery_us = {draw(st.integers(5, 60))}\n')
    if draw(st.booleans()):
        parts.append(f"[[signal]]\nvcpu = 0\nevery_us = {draw(st.integers(3, 40))}\n")
    return "\n".join(parts)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=scenarios(), policy=st.sampled_from(POLICIES), retry_max=st.integers(0, 3))
def test_random_races_keep_every_invariant(text: str, policy: str, retry_max: int) -> None:
    """No invariant breaks (one AUG per GFN, held records closed, records in time order),
    logical calls continue correctly, the wrapper's budget holds, the summary equals the
    log, and nothing enters after a dead VM."""
    sc = parse(text, "race.toml")
    out = io.StringIO()
    summary = run(sc.config(policy=policy, retry_max=retry_max), sc, 600_000, out)
    log = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["seq"] for r in log] == list(range(len(log)))
    times = [r["t_ns"] for r in log]
    assert all(a <= b for a, b in zip(times, times[1:], strict=False))
    calls = list(logical_calls(log))
    if policy in ("bounded", "vmm_lock", "backoff"):
        assert all(len(c) <= retry_max + 1 for c in calls
                   if c[0]["leaf"] in ("TDH.MEM.SEPT.ADD", "TDH.MEM.PAGE.AUG"))
    counts = recount(log)
    for key in ("events", "attempts", "busy", "retries", "giveups"):
        assert summary[key] == counts[key], key
    dead = [r["t_ns"] for r in log if r["kind"] == "vm_dead"]
    if dead:
        assert not [r for r in log if r["leaf"] == "TDH.VP.ENTER" and r["kind"] == "seamcall"
                    and r["t_ns"] > dead[0]]
