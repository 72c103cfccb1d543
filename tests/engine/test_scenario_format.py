"""The scenario file format: every kind of bad file gets its precise message, every
accepted key is documented, and the built-ins round-trip."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from engine.errors import ConfigErrors, ScenarioError
from engine.scenario import (
    BUILTIN_NAMES,
    accepted_keys,
    builtin_scenario,
    builtin_text,
    load,
    parse,
)

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "scenario-format.md"
HEAD = """
name = "t"
description = "a test"
[td]
vcpus = 2
[workload]
td_memory_mib = 16
"""
VCPU = """
[[vcpu]]
index = 0
script = [{step = "io"}, {step = "io"}, %s]
"""


def errors(body: str, head: str = HEAD) -> list[str]:
    with pytest.raises(ScenarioError) as info:
        parse(head + body, "f.toml")
    return info.value.messages


def step_errors(step: str) -> list[str]:
    return errors(VCPU % step)


# -- one test per kind of error ------------------------------------------------------------
def test_not_toml_names_the_line() -> None:
    (msg,) = errors("[[vcpu]\n")
    assert msg.startswith("f.toml: not valid TOML: ") and "line 8" in msg


def test_unknown_top_level_key() -> None:
    assert errors("", "vcpus = 3\n" + HEAD) == [
        "f.toml: vcpus: unknown key; accepted: name, description, source, policies, "
        "duration_us, gallery_duration_us, td, timing, workload, vcpu, shared, zap, "
        "invalidate, signal, memslot, prefault, init_vcpu, attributes"]


def test_policies_names_known_policies_once() -> None:
    assert parse('policies = ["bounded", "upstream"]\n' + HEAD).policies == ("bounded", "upstream")
    assert errors("", 'policies = ["bounded", "nope", "bounded"]\n' + HEAD) == [
        "f.toml: policies: unknown policy 'nope'; known: none, bounded, vmm_lock, upstream, backoff, "
        "upstream_6_17",
        "f.toml: policies: names a policy twice"]
    assert errors("", 'policies = "bounded"\n' + HEAD) == [
        "f.toml: policies: must be a list of policy names"]


def test_unknown_timing_and_workload_names() -> None:
    assert errors("[timing]\nseamcal_ns = 5\n")[0].startswith(
        "f.toml: timing.seamcal_ns: unknown name; known: seamcall_ns, page_add_ns,")


def test_vcpu_must_be_an_array_of_tables() -> None:
    assert errors("[vcpu]\nindex = 0\n") == [
        "f.toml: vcpu: must be an array of tables, written [[vcpu]]"]


def test_unknown_key_in_a_vcpu_table() -> None:
    assert errors("[[vcpu]]\nindex = 0\nve = true\n") == [
        "f.toml: vcpu[0].ve: unknown key; accepted: index, indices, ve_on_pending, "
        "memory_fault, host_delay_ns, jitter_ns, script, ve_handler"]


def test_index_and_indices() -> None:
    assert errors("[[vcpu]]\nve_on_pending = true\n") == [
        "f.toml: vcpu[0]: needs exactly one of `index` (one vCPU) or `indices` (a list)"]
    assert errors("[[vcpu]]\nindex = 0\nindices = [1]\n") == [
        "f.toml: vcpu[0]: needs exactly one of `index` (one vCPU) or `indices` (a list)"]
    assert errors("[[vcpu]]\nindices = []\n") == [
        "f.toml: vcpu[0].indices: must be a non-empty list of vCPU indices"]


def test_vcpu_index_beyond_td_vcpus() -> None:
    assert errors("[[vcpu]]\nindices = [0, 2]\n") == [
        "f.toml: vcpu[0].indices[1]: must be a vCPU index from 0 to 1 (td.vcpus = 2)"]
    assert errors("[[vcpu]]\nindex = 600\n", HEAD.replace("vcpus = 2", "")) == [
        "f.toml: vcpu[0].index: must be a vCPU index from 0 to 511"]


def test_a_vcpu_in_two_tables() -> None:
    assert errors("[[vcpu]]\nindex = 1\n[[vcpu]]\nindices = [0, 1]\n") == [
        "f.toml: vcpu[1].index: vCPU 1 already has a table (vcpu[0]); accepted: each vCPU "
        "in one [[vcpu]] table"]


def test_ve_on_pending_and_memory_fault() -> None:
    assert errors("[[vcpu]]\nindex = 0\nve_on_pending = 1\n") == [
        "f.toml: vcpu[0].ve_on_pending: must be true or false"]
    assert errors("[[vcpu]]\nindex = 0\nmemory_fault = {ignore = -1}\n") == [
        "f.toml: vcpu[0].memory_fault.ignore: must be an integer from 0 to 1000000"]
    assert errors("[[vcpu]]\nindex = 0\nmemory_fault = {skip = 1}\n") == [
        "f.toml: vcpu[0].memory_fault.skip: unknown key; accepted: ignore"]
    assert errors("[[vcpu]]\nindex = 0\nmemory_fault = 5\n") == [
        "f.toml: vcpu[0].memory_fault: must be a table"]


def test_script_must_be_a_list_of_tables() -> None:
    assert errors("[[vcpu]]\nindex = 0\nscript = \"io\"\n") == [
        'f.toml: vcpu[0].script: must be a list of steps: [{step = "access", ...}, ...]']
    assert step_errors('"io"') == [
        'f.toml: vcpu[0].script[2]: must be a table such as {step = "io", rip = "0x1000"}']


def test_unknown_or_missing_step_kind() -> None:
    assert step_errors('{step = "acess", gpa = 0}') == [
        "f.toml: vcpu[0].script[2].step: 'acess'; accepted: access, accept, io, hlt, run, "
        "rip, loop, attr_rd, attr_wr"]
    assert step_errors("{gpa = 0}") == [
        "f.toml: vcpu[0].script[2].step: missing; accepted: access, accept, io, hlt, run, "
        "rip, loop, attr_rd, attr_wr"]


def test_unknown_key_in_a_step() -> None:
    assert step_errors('{step = "accept", gpa = 0, pages = 2}') == [
        "f.toml: vcpu[0].script[2].pages: unknown key for step 'accept'; accepted: gpa, "
        "step, repeat, rip, level"]


def test_missing_key_in_a_step() -> None:
    assert step_errors('{step = "loop", gpa_start = 0}') == [
        "f.toml: vcpu[0].script[2].pages: missing for step 'loop': this key is required"]


def test_repeat_out_of_range() -> None:
    assert step_errors('{step = "io", repeat = 0}') == [
        "f.toml: vcpu[0].script[2].repeat: must be an integer from 1 to 1000000"]
    assert step_errors('{step = "io", repeat = true}') == [
        "f.toml: vcpu[0].script[2].repeat: must be an integer from 1 to 1000000"]


def test_bad_times_and_counts_in_steps() -> None:
    assert step_errors('{step = "hlt", hold_ns = -5}') == [
        "f.toml: vcpu[0].script[2].hold_ns: must be an integer from 0 to 10000000000000"]
    assert step_errors('{step = "access", gpa = 0, private = "yes"}') == [
        "f.toml: vcpu[0].script[2].private: must be true or false"]


def test_gpa_not_an_address() -> None:
    assert step_errors('{step = "access", gpa = "0xzz"}') == [
        "f.toml: vcpu[0].script[2].gpa: must be an address from 0 to 0xffffffffffffffff: an "
        'integer or a hex string such as "0x7fff0000"']


def test_rip_out_of_range() -> None:
    assert step_errors('{step = "rip", rip = -1}') == [
        "f.toml: vcpu[0].script[2].rip: must be an address from 0 to 0xffffffffffffffff: an "
        'integer or a hex string such as "0x7fff0000"']


def test_gpa_not_page_aligned() -> None:
    assert step_errors('{step = "access", gpa = "0x1001"}') == [
        "f.toml: vcpu[0].script[2].gpa: 0x1001 is not page-aligned; accepted: a byte address "
        "that is a multiple of 0x1000 (4 KiB pages)"]


def test_gpa_range_beyond_memory() -> None:
    assert errors('[[shared]]\ngpa = "0xfff000"\npages = 2\n') == [
        "f.toml: shared[0].gpa: 0xfff000 + 2 page(s) ends beyond the guest's memory "
        "(workload.td_memory_mib = 16); accepted: GPAs below 0x1000000"]


def test_actor_tables_refuse_unknown_and_want_required_keys() -> None:
    assert errors('[[invalidate]]\ngpa = 0\nat_us = 5\nlength_us = 3\n') == [
        "f.toml: invalidate[0].length_us: unknown key; accepted: gpa, at_us, duration_us, pages, zap",
        "f.toml: invalidate[0].duration_us: missing: this key is required"]


def test_zap_needs_exactly_one_of_times_or_rate() -> None:
    assert errors("[[zap]]\ngpa = 0\nat_us = 5\nevery_us = 5\n") == [
        "f.toml: zap[0]: needs exactly one of `at_us` (times) or `every_us` (a rate)"]
    assert errors("[[zap]]\ngpa = 0\nat_us = 5\nstart_us = 1\n") == [
        "f.toml: zap[0].start_us: only goes with `every_us`"]
    assert errors("[[zap]]\ngpa = 0\npages = 4\nevery_us = 5\nbatch_pages = 5\n") == [
        "f.toml: zap[0].batch_pages: must be an integer from 1 to 4"]


def test_bad_at_us() -> None:
    message = ("f.toml: zap[0].at_us: must be a time in microseconds or a list of them, each "
               "an integer from 0 to 10000000000")
    assert errors("[[zap]]\ngpa = 0\nat_us = [1.5]\n") == [message]
    assert errors("[[zap]]\ngpa = 0\nat_us = -1\n") == [message]
    assert errors("[[zap]]\ngpa = 0\nat_us = []\n") == [
        "f.toml: zap[0].at_us: must name at least one time"]


def test_signal_vcpu_and_memslot_times() -> None:
    assert errors("[[signal]]\nvcpu = 2\nevery_us = 10\n") == [
        "f.toml: signal[0].vcpu: must be a vCPU index from 0 to 1 (td.vcpus = 2)"]
    assert errors("[[signal]]\nvcpu = 0\nevery_us = 0\n") == [
        "f.toml: signal[0].every_us: must be an integer from 1 to 10000000000"]
    assert errors("[[memslot]]\ngpa = 0\ndelete_at_us = 1\nrecreate_after_us = 0\n") == [
        "f.toml: memslot[0].recreate_after_us: must be an integer from 1 to 10000000000"]


def test_every_error_is_reported_at_once() -> None:
    msgs = errors('[[shared]]\ngpa = 1\n[[signal]]\nvcpu = 9\nevery_us = 1\n' + VCPU % "7")
    assert [m.split(": ")[1] for m in msgs] == ["vcpu[0].script[2]", "shared[0].gpa",
                                                "signal[0].vcpu"]


def test_a_run_with_fewer_vcpus_than_the_file_names_is_refused() -> None:
    scenario = parse(HEAD + "[[vcpu]]\nindex = 1\n", "f.toml")
    assert scenario.config().vcpus == 2
    with pytest.raises(ConfigErrors) as info:
        scenario.config(vcpus=1)
    assert str(info.value) == ("vcpus: scenario 't' names vCPU 1 in its [[vcpu]] or [[signal]] "
                               "tables; accepts an integer from 2 to 512")


def test_an_unreadable_file() -> None:
    with pytest.raises(ScenarioError) as info:
        load(ROOT / "no-such-file.toml")
    assert info.value.messages == [f"{ROOT / 'no-such-file.toml'}: cannot read: "
                                   "No such file or directory"]


def test_validate_prints_each_error_on_its_own_line(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from app.cli import main

    bad = tmp_path / "bad.toml"
    bad.write_text(HEAD + '[[zap]]\ngpa = 1\nat_us = 5\n[[vcpu]]\nindex = 0\nfoo = 1\n')
    assert main(["validate", str(bad)]) == 1
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.splitlines() == [
        f"{bad}: vcpu[0].foo: unknown key; accepted: index, indices, ve_on_pending, "
        "memory_fault, host_delay_ns, jitter_ns, script, ve_handler",
        f"{bad}: zap[0].gpa: 0x1 is not page-aligned; accepted: a byte address that is a "
        "multiple of 0x1000 (4 KiB pages)"]
    good = tmp_path / "good.toml"
    good.write_text(HEAD)
    assert main(["validate", str(good)]) == 0
    assert "ok" in capsys.readouterr().out


# -- docs ------------------------------------------------------------------------------------
def _sections(text: str) -> list[tuple[str, str]]:
    """(heading, body) for every markdown heading of the reference page."""
    parts = re.split(r"^(#{2,3} .*)$", text, flags=re.M)
    return [(parts[i], parts[i + 1]) for i in range(1, len(parts) - 1, 2)]


def test_every_accepted_key_is_documented_under_its_heading() -> None:
    """Derived from the parser's own tables: a key the parser accepts but the reference
    does not document, under the heading of its table, fails here."""
    sections = _sections(DOC.read_text(encoding="utf-8"))
    missing = []
    for title, keys in accepted_keys().items():
        bodies = [body for heading, body in sections if title.lower() in heading.lower()]
        assert len(bodies) == 1, f"no single heading in {DOC.name} names {title!r}"
        missing += [f"{title}: {key}" for key in keys if f"`{key}`" not in bodies[0]]
    assert not missing, f"accepted but not documented in {DOC.name}: {missing}"


def test_every_step_kind_has_an_example() -> None:
    sections = dict(_sections(DOC.read_text(encoding="utf-8")))
    for title in accepted_keys():
        if title.startswith("step = "):
            body = sections[f"### `{title}`"]
            assert f"```toml\n{{ {title}" in body, f"no example for {title}"


def test_the_documented_whole_file_is_valid() -> None:
    text = DOC.read_text(encoding="utf-8")
    whole = text.split("## A whole file", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    assert parse(whole, "doc").name == "zero-step-selftest"


# -- the built-ins ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_builtins_round_trip(name: str) -> None:
    """Each built-in parses, its Scenario equals a re-parse, and it is stochastic."""
    scenario = builtin_scenario(name)
    assert scenario.name == name
    again = parse(builtin_text(name), f"{name}.toml")
    assert again == scenario
    assert not scenario.scripted and scenario.min_vcpus() == 0


def test_the_example_round_trips() -> None:
    path = ROOT / "examples" / "zero_step_selftest.toml"
    assert load(path) == parse(path.read_text(encoding="utf-8"), "other name")
