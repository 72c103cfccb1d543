// Round axis ticks, and their labels drawn in HTML over the time figure.

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
  // counts (minStep 1) take whole steps: 2.5 x 10^k only from 25 up
  const steps = minStep >= 1 && mag < 10 ? TICK_STEPS.filter((s) => s !== 2.5) : TICK_STEPS;
  const step = Math.max(mag * steps.find((s) => s * mag >= raw * 0.7), minStep);
  const values = [];
  for (let k = Math.ceil(lo / step - 1e-9); k * step <= hi + step * 1e-9; k++) values.push(k * step);
  const top = Math.max(...values.map(Math.abs), 0);
  const [unit, suffix] = top >= 1e6 ? [1e6, "M"] : top >= 1e4 ? [1e3, "k"] : [1, ""];
  const decimals = decimalsOf(step / unit);
  return { values, text: values.map((v) => (v === 0 ? "0" : String(+(v / unit).toFixed(decimals)) + suffix)) };
}

/**
 * The time figure's tick labels as overlay labels (drawLabels): plotly lays out and
 * measures every SVG tick label on every replot, most of the time figure's cost per frame,
 * whereas these are placed from the axes' own numbers. `axes` lists {kind, values, text,
 * range, domain (paper), side ("bottom", "left" or "right")}; `box` is the plot area in px
 * within the figure: {left, top, width, height}.
 */
export function axisLabels(axes, box) {
  const out = [];
  for (const axis of axes) {
    const [r0, r1] = axis.range;
    const span = r1 - r0 || 1;
    axis.values.forEach((v, i) => {
      const f = (v - r0) / span;
      if (f < -1e-6 || f > 1 + 1e-6) return;
      const text = axis.text[i];
      if (axis.side === "bottom") {
        out.push({ text, left: box.left + f * box.width, top: box.top + box.height + 8, anchor: "middle", kind: axis.kind });
        return;
      }
      const [d0, d1] = axis.domain;
      const top = box.top + (1 - (d0 + f * (d1 - d0))) * box.height;
      const left = axis.side === "left" ? box.left - 4 : box.left + box.width + 4;
      out.push({ text, left, top, anchor: axis.side === "left" ? "right" : "left", middle: true, kind: axis.kind });
    });
  }
  return out;
}
