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
const BASE_LAYOUT = {
  margin: { l: 150, r: 10, t: 6, b: 34 },
  paper_bgcolor: "rgba(0,0,0,0)",
  plot_bgcolor: "#f7f9fc",
  font: { family: "system-ui, sans-serif", size: 11 },
  uirevision: "keep",
};

/** Draw or update a figure in place (Plotly.react diffs; datarevision says arrays changed). */
function sizeOf(el) {
  let size = sizes.get(el);
  if (!size) {
    observer.observe(el);
    size = { width: Math.max(1, el.clientWidth), height: Math.max(1, el.clientHeight) };
    sizes.set(el, size);
  }
  return size;
}

export function plot(el, data, layout) {
  const size = sizeOf(el);
  return window.Plotly.react(el, data, { ...BASE_LAYOUT, ...size, autosize: false, ...layout }, PLOT_CONFIG);
}

/** True once plotly.js has loaded. */
export function plotlyReady() {
  return typeof window.Plotly === "object" && typeof window.Plotly.react === "function";
}

/** The heatmap of BUSY counts per bin: rows are operands or leaves, columns are frames. */
export function drawHeatmap(el, store, rows) {
  const grid = rows === "leaves" ? store.leaves : store.operands;
  const withStatus = rows !== "leaves";
  const trace = {
    type: "heatmap",
    name: withStatus ? "BUSY by operand" : "BUSY by leaf",
    x: store.x,
    y: grid.names,
    z: grid.z,
    customdata: grid.customdata,
    zmin: 0,
    colorscale: COLORSCALE,
    colorbar: { title: { text: "BUSY", side: "right" }, thickness: 8, len: 1, xpad: 4 },
    hoverongaps: false,
    hovertemplate: withStatus
      ? "<b>%{y}</b><br>t = %{x:,.1f} µs<br>BUSY: %{z}<br>status %{customdata}<extra></extra>"
      : "<b>%{y}</b><br>t = %{x:,.1f} µs<br>BUSY: %{z}<extra></extra>",
  };
  const range = store.timeRange();
  const { width } = sizeOf(el);
  // room for the longest row name, but never most of a narrow screen
  const longest = Math.max(4, ...grid.names.map((n) => n.length));
  const left = Math.min(7 * longest + 12, Math.round(width * 0.4));
  return plot(el, [trace], {
    datarevision: store.revision,
    margin: { ...BASE_LAYOUT.margin, l: left },
    xaxis: { title: { text: "simulated time (µs)", standoff: 2 }, range: range ?? undefined,
      autorange: range === null, showgrid: false, nticks: Math.max(3, Math.floor((width - left) / 110)),
      tickangle: 0 },
    // a fixed left margin wide enough for the longest leaf name: automargin costs a second pass
    yaxis: { type: "category", autorange: "reversed", showgrid: false },
  });
}
