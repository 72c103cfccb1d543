// The retry views: retries and give-ups over time with zero-step marks (drawn below the
// heatmaps, on their time axis), and the histogram of attempts per logical call with the
// retry max drawn in; the twin's beside the run's when comparing.

import { plot, sizeOf } from "./heatmap.js";

const SMALL_MARGIN = { l: 50, r: 12, t: 20, b: 42 };
const ZERO_STEP_COLOR = "#8250df";
const RUN_COLOR = "#52606d";
const TWIN_COLOR = "#e36209";
const MARK_HALF_WIDTH_PX = 4;
const MARK_HEIGHT_PX = 9;

/**
 * Zero-step activations as triangles standing on each band's base, all of them one filled
 * polyline on the give-ups axis (whose range is set by the figure, so pixels convert
 * exactly). Plotly draws a marker per point, each styled on every redraw, which cost about
 * 5 ms per 100 marked bins; one path costs the same whether two bins or all 600 had them.
 */
function zeroStepMarks(bands, store, x, unitsPerPx, plotWidth) {
  const half = (MARK_HALF_WIDTH_PX * Math.max(1, x.length)) / Math.max(1, plotWidth);
  const xs = [];
  const ys = [];
  const customdata = [];
  for (const { series, base, label } of bands) {
    const top = base + MARK_HEIGHT_PX * unitsPerPx;
    for (let i = 0; i < x.length; i++) {
      const count = series.zeroStep[i];
      if (!(count > 0)) continue;
      const hover = [store.xText[i], count, label];
      xs.push(x[i] - half, x[i], x[i] + half);
      ys.push(base, top, base);
      customdata.push(hover, hover, hover);
    }
    xs.push(null); // a break between the bands' polygons
    ys.push(null);
    customdata.push(null);
  }
  return {
    type: "scatter", mode: "lines", name: "zero-step", x: xs, y: ys, yaxis: "y3", fill: "toself",
    fillcolor: ZERO_STEP_COLOR, line: { width: 0, color: ZERO_STEP_COLOR }, hoveron: "points", customdata,
    hovertemplate: "%{customdata[2]}: %{customdata[0]} µs<br>zero-step activations: %{customdata[1]}<extra></extra>",
  };
}

/** One trace's x, y, hover values and labels over every band, bands split by a null. */
function joined(bands, x, key, up) {
  const xs = [];
  const ys = [];
  const values = [];
  const labels = [];
  for (const band of bands) {
    const shift = band.shift * up;
    const v = band.series[key];
    for (let i = 0; i < v.length; i++) {
      xs.push(x[i]);
      ys.push(v[i] + shift);
      values.push(v[i]);
      labels.push(band.label);
    }
    xs.push(null);
    ys.push(null);
    values.push(null);
    labels.push("");
  }
  return { x: xs, y: ys, customdata: values, text: labels };
}

/**
 * Retries (left axis y2) and give-ups (right axis y3) per bin, zero-step activations as
 * marks along each band's base: the time figure's lower part. `bands` is the run (and,
 * with a twin, the run `shift` band heights up over the twin's): one trace per series for
 * both runs, since every trace costs its share of each replot. Hover shows real counts.
 * `hidden` names series switched off in the page's legend.
 */
export function timeline(hidden = new Set()) {
  return (bands, { x, ranges, store, plotWidth, bandPx }) => {
    const hover = "%{text}: %{customdata}";
    const traces = [
      { type: "scatter", mode: "lines", name: "retries", yaxis: "y2", ...joined(bands, x, "retries", ranges.retries),
        line: { color: "#1f6feb", width: 1.5 }, hovertemplate: `${hover} retries<extra></extra>` },
      { type: "scatter", mode: "lines", name: "give-ups", yaxis: "y3", ...joined(bands, x, "giveups", ranges.giveups),
        line: { color: "#c62828", width: 1.5 }, hovertemplate: `${hover} give-ups<extra></extra>` },
      zeroStepMarks(bands.map((b) => ({ ...b, base: b.shift * ranges.giveups })), store, x,
        ranges.giveups / Math.max(1, bandPx), plotWidth),
    ];
    for (const trace of traces) trace.visible = !hidden.has(trace.name);
    return traces;
  };
}

function bars(calls, name, color, twin) {
  const keys = [...calls.keys()].sort((a, b) => a - b);
  return {
    type: "bar", name, x: keys, y: keys.map((k) => calls.get(k)),
    marker: twin ? { color: "rgba(227, 98, 9, 0.25)", line: { color, width: 1.5 } } : { color },
    hovertemplate: `${name}: %{x} attempt(s), %{y:,} calls<extra></extra>`,
  };
}

/** A dashed line just past the most attempts a bounded call may make. */
function capShape(retryMax, color) {
  const x = retryMax + 1.5; // with retry max N a call makes at most N + 1 attempts
  return { type: "line", xref: "x", yref: "paper", x0: x, x1: x, y0: 0, y1: 1, line: { color, width: 2, dash: "dash" } };
}

/** Its label above the plot, ending at the line (the line is mostly right of the bars). */
function capLabel(retryMax, color, text) {
  return { xref: "x", yref: "paper", x: retryMax + 1.5, y: 1, yanchor: "bottom", xanchor: "right", yshift: 2,
    text, showarrow: false, font: { color } };
}

/**
 * Bars of calls per attempt count, since the last change of retry max or policy (or over
 * the whole run), the twin's overlaid; each run's current retry cap as a dashed line.
 */
export function drawHistogram(el, store, { whole = false } = {}) {
  const mainMax = store.config?.retry_max;
  const runs = [[store.main, "run", RUN_COLOR]];
  let twinMax = null;
  if (store.comparing) {
    twinMax = store.twin.frame?.retry_max ?? store.compare.changes?.retry_max ?? mainMax;
    runs.push([store.twin, "twin", TWIN_COLOR]);
  }
  const traces = runs.map(([s, name, color], i) => bars(whole ? s.callsWhole : s.callsSince, name, color, i === 1));
  const shapes = [];
  const annotations = [];
  if (typeof mainMax === "number") {
    shapes.push(capShape(mainMax, "#c62828"));
    if (typeof twinMax !== "number" || twinMax === mainMax) {
      annotations.push(capLabel(mainMax, "#c62828", `retry max ${mainMax}`));
    } else {
      shapes.push(capShape(twinMax, TWIN_COLOR));
      // two labels when they fit apart, else one naming both, at the rightmost line
      const keys = traces.flatMap((t) => t.x);
      const span = Math.max(mainMax, twinMax, ...keys) + 2;
      const pxPerUnit = (sizeOf(el).width - SMALL_MARGIN.l - SMALL_MARGIN.r) / span;
      const runText = `retry max ${mainMax}`;
      const twinText = `twin: ${twinMax}`;
      const [lo, hi] = mainMax < twinMax ? [runText, twinText] : [twinText, runText];
      if (Math.abs(mainMax - twinMax) * pxPerUnit > hi.length * 6.5 + 8) {
        annotations.push(capLabel(mainMax, "#c62828", runText), capLabel(twinMax, TWIN_COLOR, twinText));
      } else {
        annotations.push(capLabel(Math.max(mainMax, twinMax), "#c62828", `${lo} · ${hi}`));
      }
    }
  }
  // The log axis always starts below 1 call: autorange would start it at the smallest bar,
  // and its lowest tick label ("10") then sits in the corner on the x axis' "0".
  const top = Math.max(1, ...traces.flatMap((t) => t.y ?? []));
  return plot(el, traces, {
    datarevision: `${store.callsRevision}/${whole}`,
    margin: SMALL_MARGIN,
    showlegend: false, // the hint above says which bars are whose: plotly's legend is laid out on every replot
    barmode: "overlay",
    bargap: 0.1,
    shapes,
    annotations,
    xaxis: { title: { text: "attempts per logical call", standoff: 6 }, rangemode: "tozero", tickangle: 0, nticks: 8 },
    yaxis: { title: { text: "calls", standoff: 2 }, type: "log", dtick: 1, exponentformat: "SI",
      autorange: false, range: [Math.log10(0.6), Math.log10(top * 1.6)] },
  });
}
