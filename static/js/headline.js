// The headline numbers: run totals, BUSY rate, simulated time and pace; the twin's beside
// them with the difference when comparing.

import { formatUs } from "./heatmap.js";

const fmtInt = new Intl.NumberFormat("en-US");
const fmtSigned = new Intl.NumberFormat("en-US", { signDisplay: "exceptZero" });

/** Simulated nanoseconds as a short human string (µs below a millisecond, else ms or s). */
export function formatSimTime(ns) {
  if (ns < 1e6) return `${(ns / 1e3).toFixed(1)} µs`;
  if (ns < 1e9) return `${(ns / 1e6).toFixed(3)} ms`;
  return `${(ns / 1e9).toFixed(3)} s`;
}

function set(id, text) {
  const el = document.getElementById(id);
  if (el.textContent !== text) el.textContent = text;
}

const ZERO = { attempts: 0, busy: 0, retries: 0, giveups: 0, zero_step_activations: 0 };
const COUNTS = [["h-attempts", "t-attempts", "attempts"], ["h-retries", "t-retries", "retries"],
  ["h-giveups", "t-giveups", "giveups"], ["h-zero-step", "t-zero-step", "zero_step_activations"]];

function rate(t) {
  return t.attempts ? (100 * (t.busy ?? 0)) / t.attempts : null;
}

export function drawHeadline(store) {
  const t = store.totals ?? ZERO;
  const twin = store.comparing ? store.twin.totals ?? ZERO : null;
  for (const [id, twinId, key] of COUNTS) {
    set(id, fmtInt.format(t[key] ?? 0));
    set(twinId, twin ? `twin ${fmtInt.format(twin[key] ?? 0)} (${fmtSigned.format((twin[key] ?? 0) - (t[key] ?? 0))})` : "");
  }
  const r = rate(t);
  set("h-busy-rate", r === null ? "–" : `${r.toFixed(2)} %`);
  const tr = twin ? rate(twin) : null;
  set("t-busy-rate", twin ? (tr === null ? "twin –" : `twin ${tr.toFixed(2)} % (${fmtSigned.format(+(tr - (r ?? 0)).toFixed(2))})`) : "");
  const f = store.lastFrame;
  set("h-sim-time", formatSimTime(f ? f.t_ns : 0));
  const tf = store.twin.frame;
  set("t-sim-time", twin && tf ? `twin ${formatSimTime(tf.t_ns)}${tf.catching_up ? " (catching up)" : ""}` : "");
  drawPace(store, f);
}

/** "42 % of speed · 9.8 frames/s", lagging in red; with a twin, "pair lags". */
function drawPace(store, f) {
  const lag = document.getElementById("h-lagging");
  const pace = store.pace;
  const running = store.state === "running";
  const lagging = Boolean(running && pace && pace.lagging);
  lag.dataset.lagging = String(lagging);
  if (!f || !pace) {
    set("h-lagging", "–");
    set("h-pace-detail", "");
    return;
  }
  const pct = `${Math.round(100 * pace.ratio)} %`;
  set("h-lagging", running ? `${pct} · ${pace.fps.toFixed(1)} fps` : "paused");
  const who = store.comparing ? "pair lags" : "lagging";
  const detail = `${formatUs(pace.achieved_speed)}/s of ${formatUs(pace.requested_speed)}/s`;
  set("h-pace-detail", running ? (lagging ? `${who}: ${detail}` : `on pace: ${detail}`) : "");
  lag.title = "achieved / requested simulated speed over the last second, and frames per second";
}

export function drawRunInfo(store) {
  set("run-id", store.runId ?? "–");
  const badge = document.getElementById("run-state");
  badge.dataset.state = store.state ?? "";
  set("run-state", store.state ?? "–");
}
