// The retry views: retries and give-ups over time with zero-step marks (drawn below the
// heatmap, on its time axis), and the histogram of attempts per logical call with the
// retry max drawn in.

import { plot } from "./heatmap.js";

const SMALL_MARGIN = { l: 48, r: 44, t: 6, b: 34 };
const ZERO_STEP_COLOR = "#8250df";
const MARK_HALF_WIDTH_PX = 4;
const MARK_HEIGHT_PX = 9;

/**
 * Zero-step activations as triangles standing on the time axis, all of them one filled
 * polyline on the give-ups axis (whose range is set here, so pixels convert exactly).
 * Plotly draws a marker per point, each styled on every redraw, which cost about 5 ms per
 * 100 marked bins; one path costs the same whether two bins or all 600 had activations.
 */
function zeroStepMarks(store, x, yTop, plotWidth, plotHeight) {
  const half = (MARK_HALF_WIDTH_PX * Math.max(1, x.length)) / Math.max(1, plotWidth);
  const top = (MARK_HEIGHT_PX * yTop) / Math.max(1, plotHeight);
  const xs = [];
  const ys = [];
  const customdata = [];
  for (let i = 0; i < x.length; i++) {
    const count = store.zeroStep[i];
    if (!(count > 0)) continue;
    const hover = [store.xText[i], count];
    xs.push(x[i] - half, x[i], x[i] + half);
    ys.push(0, top, 0);
    customdata.push(hover, hover, hover);
  }
  return {
    type: "scatter", mode: "lines", name: "zero-step", x: xs, y: ys, yaxis: "y3", fill: "toself",
    fillcolor: ZERO_STEP_COLOR, line: { width: 0, color: ZERO_STEP_COLOR }, hoveron: "points", customdata,
    hovertemplate: "t = %{customdata[0]} µs<br>zero-step activations: %{customdata[1]}<extra></extra>",
  };
}

/**
 * Retries (left axis) and give-ups (right axis) per bin, zero-step activations as marks
 * along the time axis: the lower part of the heatmap's figure (see drawHeatmap's `below`),
 * sharing its bins as x. `hidden` names the series switched off in the page's legend.
 */
export function timeline(store, hidden = new Set()) {
  return ({ x, plotWidth, plotHeight, domain }) => {
    // whole-number ticks for give-ups, which are often 0, 1 or 2 per bin
    let maxGiveups = 1;
    for (const g of store.giveups) if (g > maxGiveups) maxGiveups = g;
    const giveupsTop = maxGiveups * 1.1;
    const traces = [
      { type: "scatter", mode: "lines", name: "retries", x, y: store.retries, yaxis: "y2", text: store.xText,
        line: { color: "#1f6feb", width: 1.5 }, hovertemplate: "t = %{text} µs<br>retries: %{y}<extra></extra>" },
      { type: "scatter", mode: "lines", name: "give-ups", x, y: store.giveups, yaxis: "y3", text: store.xText,
        line: { color: "#c62828", width: 1.5 }, hovertemplate: "t = %{text} µs<br>give-ups: %{y}<extra></extra>" },
      zeroStepMarks(store, x, giveupsTop, plotWidth, plotHeight),
    ];
    for (const trace of traces) trace.visible = !hidden.has(trace.name);
    return {
      traces,
      layout: {
        yaxis2: { domain, rangemode: "tozero", color: "#1f6feb" },
        yaxis3: { overlaying: "y2", side: "right", rangemode: "tozero", color: "#c62828", showgrid: false,
          range: [0, giveupsTop], dtick: Math.max(1, Math.ceil(maxGiveups / 4)), tickformat: ",d" },
      },
    };
  };
}

/** Bars of calls per attempt count (accumulated over the run), the retry cap as a line. */
export function drawHistogram(el, store) {
  const keys = [...store.callsByAttempts.keys()].sort((a, b) => a - b);
  const counts = keys.map((k) => store.callsByAttempts.get(k));
  const retryMax = store.config?.retry_max;
  const shapes = [];
  const annotations = [];
  if (typeof retryMax === "number") {
    // with retry max N a call makes at most N + 1 attempts: draw the line at that cap
    const cap = retryMax + 1;
    shapes.push({ type: "line", xref: "x", yref: "paper", x0: cap + 0.5, x1: cap + 0.5, y0: 0, y1: 1,
      line: { color: "#c62828", width: 2, dash: "dash" } });
    annotations.push({ xref: "x", yref: "paper", x: cap + 0.5, y: 1, xanchor: "right", yanchor: "top",
      text: `retry max ${retryMax}`, showarrow: false, font: { color: "#c62828" } });
  }
  return plot(el, [{
    type: "bar", name: "logical calls", x: keys, y: counts, marker: { color: "#52606d" },
    hovertemplate: "%{x} attempt(s): %{y:,} calls<extra></extra>",
  }], {
    datarevision: store.revision,
    margin: SMALL_MARGIN,
    bargap: 0.1,
    shapes,
    annotations,
    xaxis: { title: { text: "attempts per logical call" }, rangemode: "tozero", tickangle: 0 },
    yaxis: { title: { text: "calls" }, type: "log", dtick: 1, exponentformat: "SI" },
  });
}
