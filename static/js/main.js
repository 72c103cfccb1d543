// The page's wiring: socket messages -> store -> one redraw per animation frame.

import { drawHistogram, timeline } from "./charts.js";
import { Controls } from "./controls.js";
import { drawHeadline, drawRunInfo } from "./headline.js";
import { drawHeatmap, plotlyReady, whenResized } from "./heatmap.js";
import { refreshRuns } from "./runs.js";
import { openSocket } from "./socket.js";
import { Store } from "./state.js";

const RUNS_REFRESH_MS = 15000;
const PERF_SAMPLES = 600;
const HISTOGRAM_EVERY_FRAMES = 5;

const store = new Store();
const els = {
  heatmap: document.getElementById("heatmap"),
  histogram: document.getElementById("histogram"),
  connection: document.getElementById("connection"),
  notice: document.getElementById("notice"),
  heatmapTitle: document.getElementById("heatmap-title"),
  heatmapScale: document.getElementById("heatmap-scale"),
};
// samples: work per animation frame; applied: work to bring every chart up to date
const perf = { samples: [], applied: [], frames: 0, draws: 0 };
let heatmapRows = "operands";
const hiddenSeries = new Set(); // timeline series switched off in its legend
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
  histogramDrawn.frame = -Infinity; // the old run's bars go at once
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
// What the histogram shows as last drawn: its counts move on almost every frame (they
// accumulate over the run) and on a log scale a frame's worth barely shows, so new counts
// are drawn every few frames; a new retry max (the dashed line) is drawn at once.
const histogramDrawn = { calls: -1, retryMax: undefined, frame: -Infinity };
const painters = {
  // the heatmap with the retry timeline below it, on one time axis
  heatmap: () => drawHeatmap(els.heatmap, store,
    { rows: heatmapRows, scale: els.heatmapScale, below: timeline(store, hiddenSeries) }),
  histogram: () => {
    Object.assign(histogramDrawn, { calls: store.callsRevision, retryMax: store.config?.retry_max, frame: perf.frames });
    return drawHistogram(els.histogram, store);
  },
};

function histogramStale() {
  if (store.config?.retry_max !== histogramDrawn.retryMax) return true;
  return store.callsRevision !== histogramDrawn.calls && perf.frames - histogramDrawn.frame >= HISTOGRAM_EVERY_FRAMES;
}
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
  for (const name of Object.keys(painters)) {
    if (!dirty.has(name)) continue;
    dirty.delete(name);
    painters[name]();
    if (performance.now() - t0 > FRAME_BUDGET_MS) break;
  }
  // text after the plots: plotly reads layout as it draws, and text changed before that
  // had to be laid out there and then, a forced layout per frame
  drawHeadline(store);
  drawRunInfo(store);
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
      if (msg.error) notify(`Run paused: ${msg.error}`, "error");
      scheduleRunsRefresh(0);
      break;
    case "frame":
      perf.frames += 1;
      if (store.applyFrame(msg)) newRun(msg.run_id);
      // the heatmap and the timeline follow every frame; the histogram when it is stale
      if (histogramStale()) requestDraw("heatmap", "histogram");
      else requestDraw("heatmap");
      return;
    case "state": {
      const previous = store.runId;
      store.applyState(msg);
      controls.applyConfig(msg.config);
      if (msg.error) notify(`Run paused: ${msg.error}`, "error");
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
for (const button of document.querySelectorAll("[data-series]")) {
  button.addEventListener("click", () => {
    const name = button.dataset.series;
    const shown = hiddenSeries.has(name);
    if (shown) hiddenSeries.delete(name);
    else hiddenSeries.add(name);
    button.setAttribute("aria-pressed", String(shown));
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
