// The BUSY heatmap, and the one door to plotly.js: every chart is drawn through plot().

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
// the time figure: right margin for the give-ups axis; the heatmap over the retry timeline
const FIGURE_MARGIN = { t: 6, b: 34, r: 34 };
const SPLIT = { heatmap: [0.44, 1], below: [0, 0.36] };
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
function sizeOf(el) {
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

const TICK_STEPS = [1, 2, 2.5, 5, 10];

/** Digits after the point that `x` needs (2.5 -> 1, 0.25 -> 2, 500 -> 0). */
function decimalsOf(x) {
  let d = 0;
  while (d < 6 && Math.abs(Math.round(x * 10 ** d) - x * 10 ** d) > 1e-6) d += 1;
  return d;
}

/**
 * About `count` round values across [lo, hi] (a 1, 2, 2.5 or 5 x 10^k step, never below
 * minStep) and their labels the way plotly writes them (1500, 12.5k, 1.5M).
 */
export function roundTicks(lo, hi, count, minStep = 0) {
  const raw = (hi - lo) / Math.max(1, count);
  if (!(raw > 0) || !Number.isFinite(raw)) return { values: [], text: [] };
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = Math.max(mag * TICK_STEPS.find((s) => s * mag >= raw * 0.7), minStep);
  const values = [];
  for (let k = Math.ceil(lo / step - 1e-9); k * step <= hi + step * 1e-9; k++) values.push(k * step);
  const top = Math.max(...values.map(Math.abs), 0);
  const [unit, suffix] = top >= 1e6 ? [1e6, "M"] : top >= 1e4 ? [1e3, "k"] : [1, ""];
  const decimals = decimalsOf(step / unit);
  return { values, text: values.map((v) => (v === 0 ? "0" : String(+(v / unit).toFixed(decimals)) + suffix)) };
}

/**
 * Round simulated times placed between bins: bin `bins[i]` is centred at `times[i]`. Bin
 * numbers count from the run's start, so a tick keeps its place (and plotly its label) as
 * the window scrolls.
 */
function binTicks(bins, times, count) {
  const n = times.length;
  if (n < 2) return n ? { tickvals: [bins[0]], ticktext: [String(Math.round(times[0]))] } : {};
  const { values, text } = roundTicks(times[0], times[n - 1], count);
  const tickvals = [];
  let j = 0;
  for (const t of values) {
    while (j < n - 2 && times[j + 1] < t) j += 1;
    const span = times[j + 1] - times[j];
    tickvals.push(bins[j] + (span > 0 ? (t - times[j]) / span : 0));
  }
  return { tickvals, ticktext: text };
}

/** A round number at or just above the largest count: the top of the colour scale. */
function colourTop(z) {
  let max = 0;
  for (const row of z) for (const v of row) if (v > max) max = v;
  if (max <= 1) return 1;
  const mag = 10 ** Math.floor(Math.log10(max));
  return mag * [1, 1.5, 2, 3, 4, 5, 6, 8, 10].find((s) => s * mag >= max);
}

/**
 * The colour scale beside the heatmap, in HTML: it changes only when the top of the scale
 * does (or the plot's height), whereas plotly's colorbar is laid out again on every redraw.
 * `bottomPx` lines the bar up with the bottom of the heatmap's rows.
 */
function drawColourScale(el, zmax, bottomPx) {
  const key = `${zmax}/${bottomPx}`;
  if (!el || el.dataset.drawn === key) return;
  if (!el.firstChild) {
    const bar = document.createElement("div");
    bar.className = "colorscale-bar";
    bar.style.background = `linear-gradient(to top, ${COLORSCALE.map(([p, c]) => `${c} ${p * 100}%`).join(", ")})`;
    const ticks = document.createElement("div");
    ticks.className = "colorscale-ticks";
    const title = document.createElement("span");
    title.className = "colorscale-title";
    title.textContent = "BUSY";
    el.style.setProperty("--plot-top", `${FIGURE_MARGIN.t}px`);
    el.append(bar, ticks, title);
  }
  el.style.setProperty("--plot-bottom", `${bottomPx}px`);
  const { values, text } = roundTicks(0, zmax, 4, 1);
  el.children[1].replaceChildren(...values.map((v, i) => {
    const tick = document.createElement("span");
    tick.style.bottom = `${(100 * v) / zmax}%`;
    tick.textContent = text[i];
    return tick;
  }));
  el.setAttribute("aria-label", `Colour scale: BUSY count per bin, 0 to ${zmax}`);
  el.dataset.drawn = key;
}

/** BUSY counts by row and bin; hover names the row, the bin's time and the status code. */
function heatmapTrace(store, grid, withStatus, zmax) {
  return {
    type: "heatmap",
    name: withStatus ? "BUSY by operand" : "BUSY by leaf",
    x: store.bins,
    y: grid.names,
    z: grid.z,
    // every row shares the one array of bin times: hover text without a copy per row
    text: grid.names.map(() => store.xText),
    customdata: grid.customdata,
    zmin: 0,
    zmax,
    colorscale: COLORSCALE,
    showscale: false,
    hoverongaps: false,
    hovertemplate: withStatus
      ? "<b>%{y}</b><br>t = %{text} µs<br>BUSY: %{z}<br>status %{customdata}<extra></extra>"
      : "<b>%{y}</b><br>t = %{text} µs<br>BUSY: %{z}<extra></extra>",
  };
}

/**
 * The BUSY heatmap (rows are operands or leaves, columns are frames) and, below it on the
 * same time axis, whatever `below` draws (the retry timeline): one figure, because every
 * plotly redraw has a fixed cost of a few milliseconds whatever it draws, and the two
 * change on every frame together.
 *
 * Columns are drawn by bin number, so the x scale stays linear even when bins differ in
 * simulated length (after a speed change, or while lagging): plotly then paints one pixel
 * per brick and scales the image, rather than a rectangle per brick at full size (about
 * twice the cost). The axis is labelled with round simulated times placed between bins.
 *
 * below({ x, plotWidth, plotHeight, domain }) returns { traces, layout } on axes y2 and up.
 */
export function drawHeatmap(el, store, { rows = "operands", scale = null, below = null } = {}) {
  const grid = rows === "leaves" ? store.leaves : store.operands;
  const n = store.x.length;
  const x = store.bins;
  const zmax = colourTop(grid.z);
  const heatmap = heatmapTrace(store, grid, rows !== "leaves", zmax);
  const { width, height } = sizeOf(el);
  // room for the longest row name, but never most of a narrow screen
  const longest = Math.max(4, ...grid.names.map((name) => name.length));
  const left = Math.min(7 * longest + 12, Math.round(width * 0.4));
  const plotWidth = width - left - FIGURE_MARGIN.r;
  const area = height - FIGURE_MARGIN.t - FIGURE_MARGIN.b;
  const split = below ? SPLIT : { heatmap: [0, 1] };
  const lower = below ? below({ x, plotWidth, plotHeight: area * (split.below[1] - split.below[0]), domain: split.below })
    : { traces: [], layout: {} };
  drawColourScale(scale, zmax, Math.round(FIGURE_MARGIN.b + area * split.heatmap[0]));
  return plot(el, [heatmap, ...lower.traces], {
    // with a datarevision plotly takes arrays as unchanged until it changes: switching rows
    // swaps them without a new frame (else the old rows stayed up while paused)
    datarevision: `${store.revision}/${rows}`,
    margin: { ...FIGURE_MARGIN, l: left },
    showlegend: false,
    // one time axis, along the bottom of the lowest plot
    xaxis: { title: { text: "simulated time (µs)" }, anchor: below ? "y2" : "y",
      range: n ? [x[0] - 0.5, x[n - 1] + 0.5] : undefined,
      autorange: n === 0, showgrid: false, zeroline: false, tickmode: "array", tickangle: 0,
      ...binTicks(x, store.x, Math.max(2, Math.floor(plotWidth / 110))) },
    // a fixed left margin wide enough for the longest leaf name: automargin costs a second pass
    yaxis: { type: "category", autorange: "reversed", showgrid: false, domain: split.heatmap },
    ...lower.layout,
  });
}
