"""Server benchmark: /healthz latency with the engine flat out, WS fan-out, memory over time.

Starts `tdx-contention serve` in a subprocess on a free port with a fresh data dir, sets
the speed so high that the engine runs flat out (frames say `lagging`), starts the run, and
for --duration-s seconds: polls GET /healthz, keeps --clients WebSocket clients reading
frames, and samples the server's resident memory. Prints the figures.

    python bench/server.py                      # 30 s, 50 clients
    python bench/server.py --duration-s 600     # the issue's 10-minute memory check
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

import httpx
import websockets

FLAT_OUT_SPEED = 1e12  # simulated us per wall second: far beyond what the engine can do


@dataclass
class ClientLog:
    arrivals: list[tuple[int, float]] = field(default_factory=list)  # (frame seq, monotonic)
    delays: list[float] = field(default_factory=list)  # arrival - the frame's sent_at, in s


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def start_server(port: int, data_dir: str) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--data-dir", data_dir],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.monotonic() + 20
    while time.monotonic() < end:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit("the server did not come up")


async def ws_client(url: str, log: ClientLog, stop: asyncio.Event) -> None:
    async with websockets.connect(url, max_size=2**22) as ws:
        while not stop.is_set():
            try:
                text = await asyncio.wait_for(ws.recv(), 0.5)
            except TimeoutError:
                continue
            message = json.loads(text)
            if message["type"] == "frame":
                log.arrivals.append((message["seq"], time.monotonic()))
                log.delays.append(time.time() - message["sent_at"])


async def poll_healthz(base: str, stop: asyncio.Event, latencies_ms: list[float]) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=5) as client:
        while not stop.is_set():
            began = time.perf_counter()
            reply = await client.get("/healthz")
            latencies_ms.append((time.perf_counter() - began) * 1000)
            reply.raise_for_status()
            await asyncio.sleep(0.01)


async def sample_memory(pid: int, stop: asyncio.Event, samples: list[tuple[float, float]],
                        t0: float) -> None:
    while not stop.is_set():
        samples.append((time.monotonic() - t0, rss_mib(pid)))
        await asyncio.sleep(1.0)


async def measure(base: str, pid: int, clients: int, duration_s: float) -> dict[str, object]:
    stop = asyncio.Event()
    logs = [ClientLog() for _ in range(clients)]
    latencies: list[float] = []
    memory: list[tuple[float, float]] = []
    url = base.replace("http", "ws") + "/ws"
    t0 = time.monotonic()
    tasks = [asyncio.create_task(ws_client(url, log, stop)) for log in logs]
    tasks.append(asyncio.create_task(poll_healthz(base, stop, latencies)))
    tasks.append(asyncio.create_task(sample_memory(pid, stop, memory, t0)))
    await asyncio.sleep(duration_s)
    stop.set()
    await asyncio.gather(*tasks)
    async with httpx.AsyncClient(base_url=base) as client:
        stats = (await client.get("/api/stats")).json()
    return {"logs": logs, "latencies": latencies, "memory": memory, "stats": stats,
            "wall_s": time.monotonic() - t0}


def frame_figures(logs: list[ClientLog], wall_s: float) -> dict[str, float]:
    rates = [len(log.arrivals) / wall_s for log in logs]
    first_seen: dict[int, float] = {}
    for log in logs:
        for seq, t in log.arrivals:
            first_seen[seq] = min(t, first_seen.get(seq, t))
    spread = sorted(t - first_seen[seq] for log in logs for seq, t in log.arrivals)
    delays = sorted(d for log in logs for d in log.delays)
    drifts = []  # change of a client's delivery delay from its first to its last tenth
    for log in logs:
        n = len(log.delays) // 10
        if n:
            drifts.append(statistics.median(log.delays[-n:]) - statistics.median(log.delays[:n]))
    seqs = [seq for log in logs for seq, _ in log.arrivals]
    return {"rate_min": min(rates), "rate_median": statistics.median(rates),
            "produced": (max(seqs) - min(seqs) + 1) / wall_s if seqs else 0.0,
            "spread_p99_ms": 1000 * _pct(spread, 0.99), "delay_p50_ms": 1000 * _pct(delays, 0.5),
            "delay_p99_ms": 1000 * _pct(delays, 0.99),
            "drift_median_ms": 1000 * statistics.median(drifts) if drifts else 0.0}


def _pct(values: list[float], q: float) -> float:
    return values[int(q * (len(values) - 1))] if values else 0.0


def rss_at(memory: list[tuple[float, float]], t_s: float) -> float:
    return min(memory, key=lambda sample: abs(sample[0] - t_s))[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration-s", type=float, default=30.0, help="default 30")
    parser.add_argument("--clients", type=int, default=50, help="WebSocket clients (50)")
    parser.add_argument("--scenario", default="conversion", help="default conversion")
    args = parser.parse_args()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as data_dir:
        server = start_server(port, data_dir)
        try:
            httpx.patch(base + "/api/config", json={"scenario": args.scenario,
                                                    "speed": FLAT_OUT_SPEED}).raise_for_status()
            httpx.post(base + "/api/run/start").raise_for_status()
            result = asyncio.run(measure(base, server.pid, args.clients, args.duration_s))
        finally:
            server.terminate()
            server.wait(timeout=20)
    report(args, result)
    return 0


def report(args: argparse.Namespace, result: dict[str, object]) -> None:
    latencies = sorted(result["latencies"])  # type: ignore[call-overload]
    stats: dict[str, object] = result["stats"]  # type: ignore[assignment]
    wall_s: float = result["wall_s"]  # type: ignore[assignment]
    memory: list[tuple[float, float]] = result["memory"]  # type: ignore[assignment]
    frames = frame_figures(result["logs"], wall_s)  # type: ignore[arg-type]
    early = min(60.0, wall_s / 2)
    print(f"server bench: scenario {args.scenario}, engine flat out, {args.clients} WS clients, "
          f"{wall_s:.0f} s")
    print(f"engine: {stats['sim_ns'] / 1e6 / wall_s:.2f} simulated ms per wall s, "
          f"{stats['events'] / wall_s:,.0f} records/s, lagging={stats['lagging']}")
    print(f"GET /healthz: {len(latencies)} requests, p50 {latencies[len(latencies) // 2]:.1f} ms, "
          f"p99 {latencies[int(0.99 * (len(latencies) - 1))]:.1f} ms, max {latencies[-1]:.1f} ms")
    print(f"frames: produced {frames['produced']:.2f}/s; received per client min "
          f"{frames['rate_min']:.2f}/s, median {frames['rate_median']:.2f}/s")
    print(f"frame delivery delay (publish -> client): p50 {frames['delay_p50_ms']:.1f} ms, "
          f"p99 {frames['delay_p99_ms']:.1f} ms; change first->last tenth of the run: median "
          f"{frames['drift_median_ms']:+.1f} ms; same frame across clients: p99 spread "
          f"{frames['spread_p99_ms']:.1f} ms")
    print(f"server RSS: {rss_at(memory, early):.1f} MiB at {early:.0f} s, "
          f"{memory[-1][1]:.1f} MiB at {memory[-1][0]:.0f} s "
          f"({100 * (memory[-1][1] / rss_at(memory, early) - 1):+.1f}%)")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
