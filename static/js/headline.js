// The headline numbers: run totals, BUSY rate, simulated time, and whether the run keeps pace.

const fmtInt = new Intl.NumberFormat("en-US");

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

export function drawHeadline(store) {
  const t = store.totals ?? { attempts: 0, busy: 0, retries: 0, giveups: 0, zero_step_activations: 0 };
  set("h-attempts", fmtInt.format(t.attempts ?? 0));
  set("h-busy-rate", t.attempts ? `${((100 * (t.busy ?? 0)) / t.attempts).toFixed(2)} %` : "–");
  set("h-retries", fmtInt.format(t.retries ?? 0));
  set("h-giveups", fmtInt.format(t.giveups ?? 0));
  set("h-zero-step", fmtInt.format(t.zero_step_activations ?? 0));
  const f = store.lastFrame;
  set("h-sim-time", formatSimTime(f ? f.t_ns : 0));
  const lag = document.getElementById("h-lagging");
  const lagging = Boolean(f && f.lagging);
  lag.dataset.lagging = String(lagging);
  set("h-lagging", !f ? "–" : lagging ? "lagging" : "on pace");
}

export function drawRunInfo(store) {
  set("run-id", store.runId ?? "–");
  const badge = document.getElementById("run-state");
  badge.dataset.state = store.state ?? "";
  set("run-state", store.state ?? "–");
}
