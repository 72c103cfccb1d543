"""Affordability: scenarios whose memory or event rate no machine here could afford are
refused by `parse` (and so by `validate` and the server), naming the key; sensible ones pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import afford
from engine.errors import ScenarioError
from engine.scenario import builtin_scenarios, parse

HEAD = 'name = "t"\ndescription = "a test"\n'


def _refused(text: str) -> list[str]:
    with pytest.raises(ScenarioError) as exc:
        parse(HEAD + text, "t.toml")
    return exc.value.messages


@pytest.mark.parametrize("vcpus", [1, 8, 512])
def test_built_in_scenarios_are_affordable_on_any_vcpu_count(vcpus: int) -> None:
    for scenario in builtin_scenarios():
        assert afford.problems(scenario, vcpus) == []


@pytest.mark.parametrize(("text", "key"), [
    ("[workload]\nzap_pages = 8\nzap_interval_ns = 0\n", "workload.zap_interval_ns"),
    ("[workload]\nzap_pages = 8\nzap_interval_ns = 10\n", "workload.zap_interval_ns"),
    ("[td]\nvcpus = 512\n[workload]\nmulti_gfn_fraction = 1.0\nmulti_gfn_count = 1000000\n",
     "workload.multi_gfn_count"),
    ("[workload]\ntd_memory_mib = 400000\n", "workload.td_memory_mib"),
    ("[timing]\nseamcall_ns = 0\nretry_gap_ns = 0\n", "timing.seamcall_ns"),
    ("[timing]\naccept_ns = 0\nguest_retry_gap_ns = 0\n", "timing.accept_ns"),
    ("[workload]\nzap_pages = 100000\nzap_interval_ns = 1000\n", "workload.zap_pages"),
    ('[[vcpu]]\nindex = 0\nscript = [{step = "run", ns = 100000000000}, {step = "io"}]\n',
     "vcpu[0].script"),
    ('[[vcpu]]\nindex = 0\nscript = [{step = "loop", gpa_start = 0, pages = 1000, '
     'repeat = 10000}]\n', "vcpu[0].script"),
])
def test_unaffordable_keys_are_named(text: str, key: str) -> None:
    messages = _refused(text)
    assert any(m.startswith(f"t.toml: {key}: ") for m in messages), messages


def test_the_run_s_own_vcpu_count_decides() -> None:
    scenario = parse(HEAD + "[workload]\nmulti_gfn_fraction = 0.5\nmulti_gfn_count = 200000\n")
    assert afford.problems(scenario, 8) == []
    assert [k for k, _ in afford.problems(scenario, 512)] == ["workload.multi_gfn_count"]


def test_size_and_nesting_are_refused_before_parsing() -> None:
    assert _refused("x = " + "[" * 100_000 + "]" * 100_000 + "\n")[0].startswith("t.toml: file:")
    assert "bytes" in _refused("# " + "x" * afford.MAX_SOURCE_BYTES + "\n")[0]
    parse(HEAD + 'source = "' + "[" * 100 + '"\n')  # brackets in a string are text


@pytest.mark.parametrize(("text", "depth"), [
    ('{"a": [1, {"b": 2}]}', 3), ('"[[[" # [[[\n[x]', 1), ("a = '''[[[\n'''\n", 0),
    ('"esc \\" [["', 0), ("[[vcpu]]", 2)])
def test_nesting_depth_skips_strings_and_comments(text: str, depth: int) -> None:
    assert afford.nesting_depth(text) == depth


def test_files_are_read_only_as_far_as_the_limit(tmp_path: Path) -> None:
    from engine.scenario import load

    with pytest.raises(ScenarioError, match="/dev/zero: file: more than"):
        load("/dev/zero")
    binary = tmp_path / "b.toml"
    binary.write_bytes(b"\xff\xfe name")
    with pytest.raises(ScenarioError, match="not UTF-8"):
        load(binary)


@pytest.mark.parametrize(("text", "parts"), [
    ("a.b.c = 1.5", 3), ("[x.y]\nz = 1979-05-27T07:32:00.999", 2), ("t = [1.5, 2.5, 3.5]", 1),
    ("z = {p.q.r.s = 1, t = {u.v = 2}}", 4), ('"a.b.c.d" = 1', 1), ("1.2.3.4.5 = 0", 5)])
def test_longest_key_counts_key_parts_only(text: str, parts: int) -> None:
    assert afford.longest_key(text) == parts


def test_a_long_dotted_key_is_refused_before_tomllib_spends_minutes() -> None:
    assert "dotted key" in _refused("a" + ".a" * 50_000 + " = 1\n")[0]
    assert "dotted key" in _refused("[td" + ".a" * 50_000 + "]\n")[0]
