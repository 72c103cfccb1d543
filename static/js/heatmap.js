// The time figure (BUSY heatmaps over retry timelines, for the run and its twin, on one
// time axis), and the one door to plotly.js: every chart is drawn through plot().

import { controlMarks, drawLabels, xRange } from "./marks.js";
import { axisLabels, roundTicks } from "./ticks.js";

// Sizes come from a ResizeObserver, not from plotly measuring its container on every draw
// (that forced a layout per chart per frame).
const PLOT_CONFIG = { responsive: false, displaylogo: false, displayModeBar: false };
const sizes = new WeakMap();
const observer = new ResizeObserver((entries) => {
  for (const entry of entries) {
    const { width, height } = entry.contentRect;
    sizes.set(entry.target, { width: Math.max(1, Math.floor(width)), height: Math.max(1, Math.floor(height)) });
    onResize();
  }
});
let onResize = () => {};

/** Call `callback` whenever a plotted element changes size (so the page can redraw). */
export function whenResized(callback) {
  onResize = callback;
}
const COLORSCALE = [
  [0, "#f7f9fc"], [0.02, "#fff3c4"], [0.2, "#fdd49e"], [0.45, "#fc8d59"], [0.75, "#d7301f"], [1, "#7f0000"],
];
const GAP_PX = 16; // between the heatmap and the timeline
const TICK_LABEL_PX = 24; // the time axis' HTML tick labels sit between the axis and its title
const BASE_LAYOUT = {
  margin: { l: 150, r: 10, t: 6, b: 34 },
  paper_bgcolor: "rgba(0,0,0,0)",
  plot_bgcolor: "#f7f9fc",
  font: { family: "system-ui, sans-serif", size: 11 },
  uirevision: "keep",
};
const AXIS_KEY = /^[xy]axis\d*$/;
const plotted = new WeakSet();

/** The size plotly draws at, from the ResizeObserver (one measurement, then cached). */
export function sizeOf(el) {
  let size = sizes.get(el);
  if (!size) {
    observer.observe(el);
    size = { width: Math.max(1, el.clientWidth), height: Math.max(1, el.clientHeight) };
    sizes.set(el, size);
  }
  return size;
}

/** Draw or update a figure in place (Plotly.react diffs; datarevision says arrays changed). */
export function plot(el, data, layout) {
  const full = { ...BASE_LAYOUT, ...sizeOf(el), autosize: false, ...layout };
  // By default plotly measures every tick label on every draw to hide any that spill past
  // the div (a forced layout per label); the margins leave them room instead.
  for (const key of Object.keys(full)) {
    if (AXIS_KEY.test(key)) full[key] = { ticklabeloverflow: "allow", ...full[key] };
  }
  // the config goes with the first draw only: given again, react deep-copies and compares it
  if (plotted.has(el)) return window.Plotly.react(el, data, full);
  plotted.add(el);
  return window.Plotly.react(el, data, full, PLOT_CONFIG);
}

/** True once plotly.js has loaded. */
export function plotlyReady() {
  return typeof window.Plotly === "object" && typeof window.Plotly.react === "function";
}

/** Simulated µs written short: "250 µs", "1.5 ms", "2 s". */
export function formatUs(us) {
  if (us >= 1e6) return `${+(us / 1e6).toFixed(3)} s`;
  if (us >= 1e3) return `${+(us / 1e3).toFixed(3)} ms`;
  return `${+us.toFixed(3)} µs`;
}

/** The x range in bin coordinates (bin i is centred on i) and evenly spaced time ticks. */
function timeAxis(store, plotWidth) {
  const binUs = store.binNs / 1000 || 1;
  const [lo, hi] = xRange(store);
  // ticks are round simulated times at bin edges: time t sits at t / bin - 0.5
  const { values, text } = roundTicks((lo + 0.5) * binUs, (hi + 0.5) * binUs, Math.max(2, Math.floor(plotWidth / 90)));
  return { range: [lo, hi], tickvals: values.map((t) => t / binUs - 0.5), ticktext: text, binUs };
}

/** A round number at or just above the largest count: the top of the colour scale. */
function colourTop(rowsList) {
  let max = 0;
  for (const rows of rowsList) for (const row of rows) for (const v of row) if (v > max) max = v;
  if (max <= 1) return 1;
  const mag = 10 ** Math.floor(Math.log10(max));
  return mag * [1, 1.5, 2, 3, 4, 5, 6, 8, 10].find((s) => s * mag >= max);
}

/**
 * The colour scale beside the heatmap, in HTML: it changes only when the top of the scale
 * does (or the plot's height), whereas plotly's colorbar is laid out again on every redraw.
 */
function drawColourScale(el, zmax, topPx, bottomPx, binLabel) {
  const key = `${zmax}/${topPx}/${bottomPx}/${binLabel}`;
  if (!el || el.dataset.drawn === key) return;
  if (!el.firstChild) {
    const bar = document.createElement("div");
    bar.className = "colorscale-bar";
    bar.style.background = `linear-gradient(to top, ${COLORSCALE.map(([p, c]) => `${c} ${p * 100}%`).join(", ")})`;
    const ticks = document.createElement("div");
    ticks.className = "colorscale-ticks";
    const title = document.createElement("span");
    title.className = "colorscale-title";
    el.append(bar, ticks, title);
  }
  el.style.setProperty("--plot-top", `${topPx}px`);
  el.style.setProperty("--plot-bottom", `${bottomPx}px`);
  el.children[2].textContent = `BUSY per bin (${binLabel})`;
  const { values, text } = roundTicks(0, zmax, 4, 1);
  el.children[1].replaceChildren(...values.map((v, i) => {
    const tick = document.createElement("span");
    tick.style.bottom = `${(100 * v) / zmax}%`;
    tick.textContent = text[i];
    return tick;
  }));
  el.setAttribute("aria-label", `Colour scale: BUSY count per bin of ${binLabel}, 0 to ${zmax}`);
  el.dataset.drawn = key;
}

/** Rows to show: those with BUSY in the window (either run), or all when asked or none has. */
export function shownRows(names, series, showAll) {
  const rows = [];
  for (let r = 0; r < names.length; r++) {
    if (series.some((s) => s[r] && s[r].some((v) => v > 0))) rows.push(r);
  }
  return showAll || rows.length === 0 ? names.map((_, r) => r) : rows;
}

const filled = new Map(); // value -> an array of it, as long as the window (shared rows)
function cellsOf(value, n) {
  let cells = filled.get(value);
  if (!cells || cells.length !== n) {
    cells = new Array(n).fill(value);
    filled.set(value, cells);
  }
  return cells;
}

/**
 * The heatmap trace: the run's rows and, when comparing, a blank row and the twin's rows,
 * on one numeric y axis (one trace and one axis for both: each costs a share of every
 * replot). Hover names the row, the run, the bin's span and the status code.
 */
function heatmapTrace(store, names, zs, labels, status, zmax) {
  const n = store.bins.length;
  const k = names.length;
  const z = [...zs[0]];
  const custom = names.map((name) => cellsOf(`${name} (${labels[0]})${status ? `, status ${status[name] ?? "n/a"}` : ""}`, n));
  if (zs.length === 2) {
    z.push(cellsOf(null, n), ...zs[1]);
    custom.push(cellsOf("", n), ...names.map((name) => cellsOf(`${name} (${labels[1]})`, n)));
  }
  return {
    type: "heatmap", name: "BUSY", x: store.bins, y: z.map((_, r) => r), z,
    // every row shares the one array of bin times: hover text without a copy per row
    text: z.map(() => store.xText), customdata: custom,
    zmin: 0, zmax, colorscale: COLORSCALE, showscale: false, hoverongaps: false,
    hovertemplate: `<b>%{customdata}</b><br>%{text} µs<br>BUSY: %{z}<extra></extra>`,
    yaxis: "y",
  };
}

/**
 * The time figure: the BUSY heatmap (rows are operands or leaves, columns are bins of fixed
 * simulated width) over the retry timeline, on one time axis; with compare on, the twin's
 * rows under the run's and the twin's timeline under the run's, on one colour scale and
 * one pair of timeline scales. One figure, because every plotly replot has a fixed cost of
 * a few milliseconds whatever it draws, and all of it changes on every frame.
 *
 * timeline(bands, { x, ranges, store, plotWidth, bandPx }) returns traces.
 */
export function drawTimeFigure(el, store, { rows = "operands", showAll = false, scale = null, labels: labelEl = null, timeline }) {
  const leaves = rows === "leaves";
  const names = leaves ? store.leafNames : store.operandNames;
  const runs = store.comparing ? [store.main, store.twin] : [store.main];
  const grids = runs.map((s) => (leaves ? s.leaves : s.operands));
  const shown = shownRows(names, grids, showAll);
  const y = shown.map((r) => names[r]);
  const zs = grids.map((grid) => shown.map((r) => grid[r]));
  const zmax = colourTop(zs);
  const { width, height } = sizeOf(el);
  const longest = Math.max(4, ...y.map((name) => name.length));
  const left = Math.min(7 * longest + 14, Math.round(width * 0.4));
  const marks = controlMarks(store, width - left - 34);
  const margin = { l: left, r: 34, t: marks.labels.length ? 22 : 8, b: 42 };
  const plotWidth = width - margin.l - margin.r;
  const area = height - margin.t - margin.b;
  const twin = runs.length === 2;
  const split = (twin ? 0.58 : 0.6) - GAP_PX / Math.max(1, area) / 2;
  const heatDomain = [split + GAP_PX / Math.max(1, area), 1];
  const lineDomain = [0, split];
  const labels = twin ? ["run", `twin: ${describeChanges(store.compare.changes)}`] : ["run"];
  const status = leaves ? null : store.hello?.busy_status ?? {};
  const k = y.length;
  const traces = [heatmapTrace(store, y, zs, labels, status, zmax)];
  const ticks = twin ? [...y, ...y] : y;
  const tickvals = twin ? [...y.map((_, r) => r), ...y.map((_, r) => k + 1 + r)] : y.map((_, r) => r);
  const layout = { datarevision: `${store.revision}/${rows}/${showAll}`, margin, showlegend: false,
    shapes: marks.shapes,
    yaxis: { domain: heatDomain, range: [(twin ? 2 * k + 1 : k) - 0.5, -0.5], tickmode: "array", tickvals,
      ticktext: ticks, showgrid: false, zeroline: false, automargin: false } };
  const ranges = timelineRanges(runs);
  const bandPx = (area * split) / (twin ? 2 + 2 * BAND_GAP : 1);
  // the run's band sits above the twin's on the same axes: its values are shifted up
  const bands = runs.map((series, i) => ({ series, label: labels[i], shift: twin && i === 0 ? 1 + BAND_GAP : 0 }));
  traces.push(...timeline(bands, { x: store.bins, ranges, store, plotWidth, bandPx }));
  Object.assign(layout, timelineAxes(ranges, lineDomain, twin, bandPx));
  const axis = timeAxis(store, plotWidth);
  drawColourScale(scale, zmax, margin.t, Math.round(margin.b + area * heatDomain[0]), formatUs(axis.binUs));
  layout.xaxis = { title: { text: "simulated time (µs)", standoff: TICK_LABEL_PX }, anchor: "y2", range: axis.range,
    autorange: false, showgrid: false, zeroline: false, tickmode: "array", tickangle: 0,
    tickvals: axis.tickvals, ticktext: axis.ticktext };
  const tickAxes = [
    { kind: "xtick", side: "bottom", values: axis.tickvals, text: axis.ticktext, range: axis.range },
    { kind: "ytick", side: "left", values: tickvals, text: ticks, range: layout.yaxis.range, domain: heatDomain },
    { kind: "y2tick", side: "left", values: layout.yaxis2.tickvals, text: layout.yaxis2.ticktext,
      range: layout.yaxis2.range, domain: lineDomain },
    { kind: "y3tick", side: "right", values: layout.yaxis3.tickvals, text: layout.yaxis3.ticktext,
      range: layout.yaxis3.range, domain: lineDomain },
  ];
  for (const key of ["xaxis", "yaxis", "yaxis2", "yaxis3"]) layout[key].showticklabels = false;
  const done = plot(el, traces, layout);
  const toPx = (paper) => margin.t + (1 - paper) * area;
  const overlay = marks.labels.map((l) => ({ ...l, left: margin.l + l.x + (l.anchor === "left" ? 2 : -2), top: margin.t - 17 }));
  overlay.push(...axisLabels(tickAxes, { left: margin.l, top: margin.t, width: plotWidth, height: area }));
  if (twin) {
    const heatPaper = (v) => heatDomain[1] - ((v + 0.5) / (2 * k + 1)) * (heatDomain[1] - heatDomain[0]);
    const linePaper = (v) => lineDomain[0] + (v / (ranges.retries * (2 + 2 * BAND_GAP))) * (lineDomain[1] - lineDomain[0]);
    labels.forEach((text, i) => {
      overlay.push({ text: i === 0 ? "run" : "twin", left: margin.l + plotWidth + 10, anchor: "middle", middle: true,
        rotate: true, top: toPx(heatPaper(i === 0 ? (k - 1) / 2 : k + 1 + (k - 1) / 2)), kind: "band" });
      overlay.push({ text, left: margin.l + 6, anchor: "left",
        top: toPx(linePaper(ranges.retries * (i === 0 ? 2 + BAND_GAP : 1))) - 14, kind: "band" });
    });
  }
  drawLabels(labelEl, overlay);
  return done;
}

// With a twin, the timeline axes hold two bands of height 1 (in units of each scale's
// top) with BAND_GAP between and above them: twin [0, 1], run [1 + gap, 2 + gap].
const BAND_GAP = 0.3;

/** The largest retries and give-ups per bin over every shown run: one scale for both. */
function timelineRanges(runs) {
  let retries = 1;
  let giveups = 1;
  for (const s of runs) {
    for (const v of s.retries) if (v > retries) retries = v;
    for (const v of s.giveups) if (v > giveups) giveups = v;
  }
  return { retries: retries * 1.1, giveups: giveups * 1.1, retriesMax: retries, giveupsMax: giveups };
}

/** Ticks of one band, repeated for the run's band above the twin's. */
function bandTicks(top, max, count, twin, integer) {
  const { values, text } = roundTicks(0, max, count, integer ? 1 : 0);
  if (!twin) return { tickvals: values, ticktext: text, range: [0, top] };
  const up = top * (1 + BAND_GAP);
  return { tickvals: [...values, ...values.map((v) => v + up)], ticktext: [...text, ...text],
    range: [0, top * (2 + 2 * BAND_GAP)] };
}

/** Retries on the left (y2), give-ups on the right (y3), over the lower domain. */
function timelineAxes(ranges, domain, twin, bandPx) {
  const count = Math.max(1, Math.min(3, Math.floor(bandPx / 30)));
  return {
    yaxis2: { domain, color: "#1f6feb", tickmode: "array", zeroline: false,
      ...bandTicks(ranges.retries, ranges.retriesMax, count, twin, true) },
    yaxis3: { overlaying: "y2", side: "right", color: "#c62828", showgrid: false, tickmode: "array", zeroline: false,
      ...bandTicks(ranges.giveups, ranges.giveupsMax, count, twin, true) },
  };
}

/** {"policy": "upstream", "retry_max": 4} -> "policy upstream, retry max 4". */
export function describeChanges(changes) {
  return Object.entries(changes ?? {}).map(([key, v]) => `${key.replace(/_/g, " ")} ${fieldValue(v)}`).join(", ");
}

export function fieldValue(v) {
  return v === true ? "on" : v === false ? "off" : String(v);
}
