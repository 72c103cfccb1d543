// The page's wiring: socket messages -> store -> one redraw per animation frame.

import { drawHistogram, drawTimeline } from "./charts.js";
import { Controls } from "./controls.js";
import { drawHeadline, drawRunInfo } from "./headline.js";
import { drawHeatmap, plotlyReady, whenResized } from "./heatmap.js";
import { refreshRuns } from "./runs.js";
import { openSocket } from "./socket.js";
import { Store } from "./state.js";

const RUNS_REFRESH_MS = 15000;
const PERF_SAMPLES = 600;
const TIMELINE_EVERY_FRAMES = 2;
const HISTOGRAM_EVERY_FRAMES = 5;

const store = new Store();
const els = {
  heatmap: document.getElementById("heatmap"),
  timeline: document.getElementById("timeline"),
  histogram: document.getElementById("histogram"),
  connection: document.getElementById("connection"),
  notice: document.getElementById("notice"),
  heatmapTitle: document.getElementById("heatmap-title"),
};
// samples: work per animation frame; applied: work to bring every chart up to date
const perf = { samples: [], applied: [], frames: 0, draws: 0 };
let heatmapRows = "operands";
let drawScheduled = false;
let pendingReason = null;

function notify(text, kind = "info") {
  els.notice.textContent = text;
  els.notice.dataset.kind = kind;
  els.notice.hidden = false;
}

let runsTimer = null;
function scheduleRunsRefresh(delayMs = 300) {
  clearTimeout(runsTimer);
  runsTimer = setTimeout(() => refreshRuns(store.runId), delayMs);
}

const controls = new Controls(store, {
  notify: (text, kind) => {
    pendingReason = kind === "error" ? null : text;
    notify(text, kind);
  },
  onRunChanged: (answer) => {
    if (answer && answer.state) {
      store.state = answer.state;
      if (answer.run_id !== undefined && answer.run_id !== store.runId) newRun(answer.run_id);
      requestDraw();
    }
    scheduleRunsRefresh();
  },
});

function newRun(runId) {
  if (runId !== store.runId) store.startRun(runId);
  const reason = pendingReason ? pendingReason.replace(/\.$/, "") : "New run";
  notify(`${reason} (run ${runId}).`);
  pendingReason = null;
  scheduleRunsRefresh();
}

// Each plotly redraw costs several milliseconds on a slow machine, so one animation frame
// draws charts in priority order until its budget is spent and leaves the rest dirty for
// the next one: no animation frame runs long, and frames that pile up meanwhile are folded
// into the store and drawn once.
const FRAME_BUDGET_MS = 8;
const painters = {
  heatmap: () => drawHeatmap(els.heatmap, store, heatmapRows),
  timeline: () => drawTimeline(els.timeline, store),
  histogram: () => drawHistogram(els.histogram, store),
};
const dirty = new Set();
let pendingApplyMs = 0;

function record(list, value) {
  list.push(value);
  if (list.length > PERF_SAMPLES) list.shift();
}

function draw() {
  drawScheduled = false;
  if (!plotlyReady()) return;
  const t0 = performance.now();
  drawHeadline(store);
  drawRunInfo(store);
  for (const name of Object.keys(painters)) {
    if (!dirty.has(name)) continue;
    dirty.delete(name);
    painters[name]();
    if (performance.now() - t0 > FRAME_BUDGET_MS) break;
  }
  const dt = performance.now() - t0;
  perf.draws += 1;
  record(perf.samples, dt);
  pendingApplyMs += dt;
  if (dirty.size > 0) {
    drawScheduled = true;
    requestAnimationFrame(draw);
  } else {
    record(perf.applied, pendingApplyMs);
    pendingApplyMs = 0;
  }
}

/** Mark charts as stale (all by default) and draw them in the coming animation frames. */
function requestDraw(...names) {
  for (const name of names.length ? names : Object.keys(painters)) dirty.add(name);
  if (drawScheduled) return;
  drawScheduled = true;
  requestAnimationFrame(draw);
}

function handle(msg) {
  switch (msg.type) {
    case "hello":
      store.applyHello(msg);
      controls.applyHello(msg);
      scheduleRunsRefresh(0);
      break;
    case "frame":
      perf.frames += 1;
      if (store.applyFrame(msg)) newRun(msg.run_id);
      // The heatmap follows every frame. The histogram accumulates over the whole run, so
      // every few frames is plenty; the retry timeline at half the frame rate still moves
      // smoothly and keeps one frame's work within an animation frame's budget.
      if (perf.frames % HISTOGRAM_EVERY_FRAMES === 0) requestDraw();
      else if (perf.frames % TIMELINE_EVERY_FRAMES === 0) requestDraw("heatmap", "timeline");
      else requestDraw("heatmap");
      return;
    case "state": {
      const previous = store.runId;
      store.applyState(msg);
      controls.applyConfig(msg.config);
      if (store.runId !== previous) newRun(store.runId);
      else if (msg.state === "paused") scheduleRunsRefresh();
      break;
    }
    case "error":
      notify(`Server: ${msg.message}`, "error");
      return;
    default:
      return; // pong and anything newer than this page
  }
  requestDraw();
}

function showConnection({ state, retryInMs }) {
  const el = els.connection;
  el.dataset.state = state;
  el.textContent = state === "connected" ? "Connected"
    : state === "connecting" ? "Connecting…"
    : `Disconnected: retrying in ${(retryInMs / 1000).toFixed(1)} s`;
}

for (const button of document.querySelectorAll("[data-rows]")) {
  button.addEventListener("click", () => {
    heatmapRows = button.dataset.rows;
    for (const b of document.querySelectorAll("[data-rows]")) {
      b.setAttribute("aria-pressed", String(b === button));
    }
    els.heatmapTitle.textContent = heatmapRows === "leaves" ? "BUSY per leaf" : "BUSY per operand";
    requestDraw("heatmap");
  });
}
document.getElementById("btn-runs-refresh").addEventListener("click", () => refreshRuns(store.runId));
setInterval(() => {
  if (document.visibilityState === "visible" && store.state === "running") refreshRuns(store.runId);
}, RUNS_REFRESH_MS);

// For tests and bench/page.py: read-only views, plus a way to feed messages without a server.
window.tdxDashboard = { store, perf, handle, draw };

whenResized(() => requestDraw());
requestDraw();
openSocket({ onMessage: handle, onStatus: showConnection });
