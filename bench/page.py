"""Benchmark: time to apply one frame to the dashboard's charts in headless Chromium.

Serves static/ and plotly.js from disk (no server), answers the page's WebSocket with a
hello naming the engine's 7 operands and its leaves, fills the heatmap's 600-bin window,
then feeds frames at 10 a second for --seconds and reports, from the page's own
performance.now() figures:

- per frame: the whole work to bring every chart up to date after a frame (heatmap,
  retries/give-ups timeline, histogram, headline numbers), however many animation frames
  it was spread over;
- per animation frame: the work done inside one requestAnimationFrame callback (what
  decides whether the page janks; the page keeps it near an 8 ms budget);
- per chart: the median Plotly.react call for each plot, by element id (#heatmap, which
  holds the retry timeline too; #histogram), and how many times it was drawn.

Frames carry a compare twin (the page draws both heatmaps, both timelines and both
histograms) unless --no-twin is given.

--compare DIR also measures the page in DIR (another checkout's static/, for before and
after figures from one run on one machine), alternating with this one for --rounds rounds.

    python bench/page.py [--seconds 10] [--rounds 1] [--compare DIR] [--no-twin] [--zero-step-every 5]
                         [--width 1280 --height 720]
"""

from __future__ import annotations

import argparse
import json
import mimetypes
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import plotly
from playwright.sync_api import Browser, Route, WebSocketRoute, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
# run as a script, bench/ comes first on sys.path and bench/engine.py would shadow engine/
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from engine.status import (  # noqa: E402
    LEAVES,
    OPERAND_IDS,
    OPERANDS,
    TDX_OPERAND_BUSY,
    status_hex,
)

STATIC = ROOT / "static"
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
ORIGIN = "http://bench.invalid"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# Runs in the page: a 600-bin backlog, then frames at 10 per second, then the figures.
FEED_JS = """async ([seconds, backlog, zeroStepEvery, compare]) => {
  const d = window.tdxDashboard;
  const ops = d.store.hello.operands, leaves = d.store.hello.leaves;
  let seq = 0, t = 0;
  const counters = (runId, i) => {
    const busy = {}, byLeaf = {}, calls = {};
    const busyList = ops.map((o, k) => Math.floor(Math.random() * (k === 0 ? 40 : k < 3 ? 8 : 0)));
    ops.forEach((o, k) => busy[o] = busyList[k]);
    const leafList = leaves.map(() => Math.floor(Math.random() * 6));
    leaves.forEach((l, k) => byLeaf[l] = leafList[k]);
    for (let a = 1; a <= 17; a++) calls[String(a)] = Math.floor(400 / (a * a));
    const zs = seq % zeroStepEvery === 0 ? 2 : 0;
    return {run_id: runId, seq, t0_ns: t, t_ns: t + 100000, attempts: 500, retries: 40, giveups: seq % 7, busy,
      busy_by_leaf: byLeaf, zero_step_activations: zs, calls_by_attempts: calls, calls_since_change: calls,
      lagging: false, retry_max: 16, bin_ns: 100000,
      bins: [{i, attempts: 500, retries: 40, giveups: seq % 7, zero_step: zs, busy: busyList, leaf: leafList,
              pairs: [[0, 1, busyList[0]], [1, 2, busyList[1]]]}],
      totals: {events: seq * 500, attempts: seq * 500, busy: seq * 40, retries: seq * 40, giveups: seq, zero_step_activations: seq}};
  };
  const frame = () => {
    const f = {type: "frame", ...counters("bench", seq),
      pace: {ratio: 1, fps: 10, achieved_speed: 1000, requested_speed: 1000, lagging: false}};
    if (compare) f.twin = {...counters("bench-twin", seq), changes: {policy: "upstream"}, catching_up: false};
    seq += 1; t += 100000;
    return f;
  };
  if (compare) d.handle({type: "state", run_id: "bench", state: "running", config: d.store.config,
    compare: {on: true, changes: {policy: "upstream"}, run_id: "bench-twin"}, controls: [], bin_ns: 100000});
  for (let i = 0; i < backlog; i++) d.handle(frame());
  await new Promise((r) => setTimeout(r, 1500));
  d.perf.samples.length = 0; d.perf.applied.length = 0;
  const charts = {}, react = window.Plotly.react;
  window.Plotly.react = function (el, ...rest) {
    const t0 = performance.now(), done = react.call(this, el, ...rest);
    (charts[el.id] ??= []).push(performance.now() - t0);
    return done;
  };
  const t0 = performance.now();
  await new Promise((resolve) => {
    const timer = setInterval(() => {
      d.handle(frame());
      if (performance.now() - t0 >= seconds * 1000) { clearInterval(timer); resolve(); }
    }, 100);
  });
  await new Promise((r) => setTimeout(r, 500));
  window.Plotly.react = react;
  const heat = document.getElementById("heatmap").data.filter((tr) => tr.type === "heatmap");
  return {applied: d.perf.applied.slice(), samples: d.perf.samples.slice(), bins: d.store.x.length, charts,
          rows: ops.length, heatmaps: heat.length,
          trace: heat[0].type, zShape: [heat[0].z.length, heat[0].z[0].length]};
}"""


def hello() -> dict[str, object]:
    config = {"scenario": "zero-step", "policy": "bounded", "retry_max": 16, "zero_step": True,
              "vcpus": 8, "module_version": "1.5", "seed": 1, "speed": 1000.0}
    return {"type": "hello", "run_id": "bench", "state": "running", "config": config,
            "operands": list(OPERANDS), "leaves": list(LEAVES),
            "busy_status": {op: status_hex(TDX_OPERAND_BUSY | OPERAND_IDS[op][0]) for op in OPERANDS},
            "policies": ["none", "bounded", "vmm_lock", "upstream", "backoff", "upstream_6_17"],
            "module_versions": ["1.0", "1.5"], "scenarios": [{"name": "zero-step", "description": ""}],
            "live_fields": ["policy", "retry_max", "zero_step", "speed"],
            "limits": {"retry_max": [0, 1024], "vcpus": [1, 512]}, "frame_interval_ms": 100,
            "token_required": False, "bin_ns": 100000, "controls": [],
            "compare": {"on": False, "changes": {}, "run_id": None},
            "compare_fields": ["policy", "retry_max", "zero_step"],
            "holders": [{"operand": "SEPT_TREE", "leaf": "TDH.VP.ENTER", "label": "zero-step",
                         "series": "zero_step"}]}


def file_server(static: Path) -> Callable[[Route], None]:
    """Answers the page's requests from `static` and the plotly package, as the app would."""

    def serve_file(route: Route) -> None:
        path = route.request.url.split(ORIGIN, 1)[1].split("?", 1)[0]
        if path == "/":
            file = static / "index.html"
        elif path == "/vendor/plotly.min.js":
            file = PLOTLY_JS
        elif path.startswith("/static/"):
            file = static / path.removeprefix("/static/")
        elif path == "/api/runs":
            route.fulfill(status=200, content_type="application/json", body="[]")
            return
        else:
            route.fulfill(status=404, body="")
            return
        kind = "text/javascript" if file.suffix == ".js" else mimetypes.guess_type(file.name)[0]
        route.fulfill(status=200, content_type=kind or "application/octet-stream", body=file.read_bytes())

    return serve_file


def on_socket(ws: WebSocketRoute) -> None:
    ws.send(json.dumps(hello()))
    ws.on_message(lambda message: ws.send('{"type": "pong"}'))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(browser: Browser, static: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One page, one backlog, --seconds of frames: the page's own figures."""
    page = browser.new_page(viewport={"width": args.width, "height": args.height})
    page.route(f"{ORIGIN}/**", file_server(static))
    page.route_web_socket("**/ws", on_socket)
    page.goto(f"{ORIGIN}/")
    page.wait_for_function("window.tdxDashboard && window.tdxDashboard.store.hello !== null")
    result: dict[str, Any] = page.evaluate(
        FEED_JS, [args.seconds, args.backlog, args.zero_step_every, not args.no_twin])
    page.close()
    return result


def report(label: str, result: dict[str, Any]) -> None:
    applied, samples = result["applied"], result["samples"]
    print(f"{label}: apply one frame to all charts: median {statistics.median(applied):.1f} ms, "
          f"p95 {percentile(applied, 0.95):.1f} ms over {len(applied)} frames")
    print(f"{label}: work per animation frame:      median {statistics.median(samples):.1f} ms, "
          f"p95 {percentile(samples, 0.95):.1f} ms, max {max(samples):.1f} ms over {len(samples)} callbacks")
    charts = ", ".join(f"{name} {statistics.median(times):.1f} ms x {len(times)}"
                       for name, times in sorted(result["charts"].items()))
    print(f"{label}: Plotly.react per chart (median x calls): {charts}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--backlog", type=int, default=600, help="frames fed before measuring")
    parser.add_argument("--compare", type=Path, help="another static/ to measure alongside this one")
    parser.add_argument("--rounds", type=int, default=1, help="measurements of each page, alternating")
    parser.add_argument("--no-twin", action="store_true",
                        help="no compare twin (by default frames carry one and the page shows both)")
    parser.add_argument("--zero-step-every", type=int, default=5, metavar="N",
                        help="zero-step activations in every Nth bin (1: every bin, as in a zero-step run)")
    args = parser.parse_args()
    pages = {"this": STATIC} if args.compare is None else {"this": STATIC, "compare": args.compare}
    results: dict[str, list[dict[str, Any]]] = {label: [] for label in pages}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS)
        for _ in range(args.rounds):
            for label, static in pages.items():
                results[label].append(measure(browser, static, args))
        browser.close()
    first = results["this"][0]
    print(f"heatmap: {first['heatmaps']} x {first['trace']} {first['zShape'][0]} rows x {first['zShape'][1]} bins; "
          f"{args.seconds:g} s at 10 frames/s, viewport {args.width}x{args.height}, {args.rounds} round(s)")
    for label, static in pages.items():
        pooled = {key: [v for r in results[label] for v in r[key]] for key in ("applied", "samples")}
        charts: dict[str, list[float]] = {}
        for r in results[label]:
            for name, times in r["charts"].items():
                charts.setdefault(name, []).extend(times)
        report(f"{label} ({static})" if args.compare else "", {**pooled, "charts": charts})


if __name__ == "__main__":
    main()
