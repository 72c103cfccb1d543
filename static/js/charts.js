// The retry views: retries and give-ups over time with zero-step marks, and the
// histogram of attempts per logical call with the retry max drawn in.

import { plot } from "./heatmap.js";

const SMALL_MARGIN = { l: 48, r: 44, t: 6, b: 34 };

/** Retries and give-ups per bin; zero-step activations as marks along the time axis. */
export function drawTimeline(el, store) {
  const range = store.timeRange();
  // whole-number ticks for give-ups, which are often 0, 1 or 2 per bin
  let maxGiveups = 1;
  for (const g of store.giveups) if (g > maxGiveups) maxGiveups = g;
  const traces = [
    { type: "scatter", mode: "lines", name: "retries", x: store.x, y: store.retries,
      line: { color: "#1f6feb", width: 1.5 }, hovertemplate: "t = %{x:,.1f} µs<br>retries: %{y}<extra></extra>" },
    { type: "scatter", mode: "lines", name: "give-ups", x: store.x, y: store.giveups, yaxis: "y2",
      line: { color: "#c62828", width: 1.5 }, hovertemplate: "t = %{x:,.1f} µs<br>give-ups: %{y}<extra></extra>" },
    // on the time axis itself (y = 0) rather than on an axis of their own: one axis fewer to draw
    { type: "scatter", mode: "markers", name: "zero-step", x: store.x, y: store.zeroStepY, cliponaxis: false,
      customdata: store.zeroStep, marker: { symbol: "triangle-up", size: 8, color: "#8250df" },
      hovertemplate: "t = %{x:,.1f} µs<br>zero-step activations: %{customdata}<extra></extra>" },
  ];
  return plot(el, traces, {
    datarevision: store.revision,
    margin: SMALL_MARGIN,
    showlegend: true,
    legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom", bgcolor: "rgba(0,0,0,0)" },
    xaxis: { title: { text: "simulated time (µs)", standoff: 2 }, range: range ?? undefined,
      autorange: range === null, nticks: 8 },
    yaxis: { title: { text: "retries / bin" }, rangemode: "tozero", color: "#1f6feb" },
    yaxis2: { title: { text: "give-ups" }, overlaying: "y", side: "right", rangemode: "tozero",
      color: "#c62828", showgrid: false, range: [0, maxGiveups * 1.1],
      dtick: Math.max(1, Math.ceil(maxGiveups / 4)), tickformat: ",d" },
  });
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
    xaxis: { title: { text: "attempts per logical call", standoff: 2 }, rangemode: "tozero" },
    yaxis: { title: { text: "calls" }, type: "log", dtick: 1, exponentformat: "SI" },
  });
}
