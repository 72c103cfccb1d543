// The page's wiring: socket messages -> store -> one redraw per animation frame.

import { drawCaption } from "./caption.js";
import { drawHistogram, timeline } from "./charts.js";
import { CompareControls } from "./compare.js";
import { Controls } from "./controls.js";
import { drawHeadline, drawRunInfo } from "./headline.js";
import { drawTimeFigure, formatUs, plotlyReady, whenResized } from "./heatmap.js";
import { Notices } from "./notices.js";
import { refreshRuns, updateCurrentRow } from "./runs.js";
import { openSocket } from "./socket.js";
import { Store } from "./state.js";
import { Upload } from "./upload.js";

const RUNS_REFRESH_MS = 15000;
const PERF_SAMPLES = 600;
const HISTOGRAM_EVERY_FRAMES = 5;

const store = new Store();
const els = {
  heatmap: document.getElementById("heatmap"),
  histogram: document.getElementById("histogram"),
  connection: document.getElementById("connection"),
  heatmapTitle: document.getElementById("heatmap-title"),
  heatmapScale: document.getElementById("heatmap-scale"),
  figureLabels: document.getElementById("figure-labels"),
  empty: document.getElementById("empty-state"),
  binWidth: document.getElementById("bin-width"),
  caption: document.getElementById("caption"),
  histogramHint: document.getElementById("histogram-hint"),
};
// samples: work per animation frame; applied: work to bring every chart up to date
const perf = { samples: [], applied: [], frames: 0, draws: 0 };
const view = { rows: "operands", showAll: false, wholeRun: false };
const hiddenSeries = new Set(); // timeline series switched off in its legend
const notices = new Notices(document.getElementById("notice"));
let drawScheduled = false;
let pendingReason = null;

let runsTimer = null;
function scheduleRunsRefresh(delayMs = 300) {
  clearTimeout(runsTimer);
  runsTimer = setTimeout(() => refreshRuns(store), delayMs);
}

const controls = new Controls(store, {
  // pending: the text names a new run about to start (newRun adds its id)
  notify: (text, kind, pending = true) => {
    pendingReason = kind === "error" || !pending ? null : text;
    notices.show(text, kind);
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
const compare = new CompareControls(store, { notify: (text, kind) => notices.show(text, kind), changed: () => requestDraw() });
new Upload({ notify: (text, kind) => notices.show(text, kind) });

function newRun(runId) {
  if (runId !== store.runId) store.startRun(runId);
  histogramDrawn.frame = -Infinity; // the old run's bars go at once
  // a notice belongs to the event that raised it: the new run's reason, or none
  if (pendingReason) notices.show(`${pendingReason.replace(/\.$/, "")} (run ${runId}).`);
  else notices.clear();
  pendingReason = null;
  scheduleRunsRefresh();
}

// Each plotly redraw costs several milliseconds on a slow machine, so one animation frame
// draws charts in priority order until its budget is spent and leaves the rest dirty for
// the next one: no animation frame runs long, and frames that pile up meanwhile are folded
// into the store and drawn once.
const FRAME_BUDGET_MS = 8;
// What the histogram shows as last drawn: its counts move on almost every frame and on a
// log scale a frame's worth barely shows, so new counts are drawn every few frames; a new
// retry max (the dashed line), a new span or a new run is drawn at once.
const histogramDrawn = { calls: -1, key: "", frame: -Infinity };
const painters = {
  // the heatmaps with the retry timelines below them, on one time axis
  heatmap: () => drawTimeFigure(els.heatmap, store,
    { rows: view.rows, showAll: view.showAll, scale: els.heatmapScale, labels: els.figureLabels,
      timeline: timeline(hiddenSeries) }),
  histogram: () => {
    Object.assign(histogramDrawn, { calls: store.callsRevision, key: histogramKey(), frame: perf.frames });
    return drawHistogram(els.histogram, store, { whole: view.wholeRun });
  },
};

function histogramKey() {
  return `${store.config?.retry_max}/${store.twin.frame?.retry_max}/${view.wholeRun}/${store.comparing}/${store.controls.length}`;
}

function histogramStale() {
  if (histogramKey() !== histogramDrawn.key) return true;
  return store.callsRevision !== histogramDrawn.calls && perf.frames - histogramDrawn.frame >= HISTOGRAM_EVERY_FRAMES;
}
const dirty = new Set();
let pendingApplyMs = 0;

function record(list, value) {
  list.push(value);
  if (list.length > PERF_SAMPLES) list.shift();
}

function histogramHint() {
  const span = view.wholeRun ? "calls completed over the whole run" : "calls completed since retry max or policy last changed";
  return store.comparing ? `${span}; grey: run, orange outline: twin` : span;
}

function drawText() {
  const hint = histogramHint();
  if (els.histogramHint.textContent !== hint) els.histogramHint.textContent = hint;
  drawHeadline(store);
  drawRunInfo(store);
  els.empty.hidden = store.bins.length > 0;
  const comparing = String(store.comparing);
  if (document.body.dataset.comparing !== comparing) document.body.dataset.comparing = comparing;
  const bin = store.binNs ? `1 bin = ${formatUs(store.binNs / 1000)} simulated` : "";
  if (els.binWidth.textContent !== bin) els.binWidth.textContent = bin;
  drawCaption(els.caption, store, view.rows);
  updateCurrentRow(store);
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
  drawText();
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
      compare.applyHello(msg);
      if (msg.error) notices.show(`Run paused: ${msg.error}`, "error");
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
      const controlsBefore = store.controls.length;
      store.applyState(msg);
      controls.applyConfig(msg.config);
      compare.applyState();
      if (msg.error) notices.show(`Run paused: ${msg.error}`, "error");
      if (store.runId !== previous) newRun(store.runId);
      else if (msg.state === "paused" || store.controls.length !== controlsBefore) scheduleRunsRefresh();
      break;
    }
    case "scenarios":
      controls.applyScenarios(msg.scenarios ?? []);
      return;
    case "error":
      notices.show(`Server: ${msg.message}`, "error");
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

function pressOne(selector, button) {
  for (const b of document.querySelectorAll(selector)) b.setAttribute("aria-pressed", String(b === button));
}

for (const button of document.querySelectorAll("[data-rows]")) {
  button.addEventListener("click", () => {
    view.rows = button.dataset.rows;
    pressOne("[data-rows]", button);
    els.heatmapTitle.textContent = view.rows === "leaves" ? "BUSY per leaf" : "BUSY per operand";
    requestDraw("heatmap");
  });
}
document.getElementById("show-all-rows").addEventListener("change", (event) => {
  view.showAll = event.target.checked;
  requestDraw("heatmap");
});
for (const button of document.querySelectorAll("[data-span]")) {
  button.addEventListener("click", () => {
    view.wholeRun = button.dataset.span === "whole";
    pressOne("[data-span]", button);
    requestDraw("histogram");
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
document.getElementById("btn-runs-refresh").addEventListener("click", () => refreshRuns(store));
setInterval(() => {
  if (document.visibilityState === "visible" && store.state === "running") refreshRuns(store);
}, RUNS_REFRESH_MS);

// For tests and bench/page.py: read-only views, plus a way to feed messages without a server.
window.tdxDashboard = { store, perf, handle, draw, view };

whenResized(() => requestDraw());
requestDraw();
openSocket({ onMessage: handle, onStatus: showConnection });
