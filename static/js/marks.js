// Control marks: a labelled line on the time axis for every live change in the window.

const MIN_COLUMNS = 100; // while the window fills, bins keep a width of at least 1/100 of it
const CHAR_PX = 6.2; // an 11 px system-ui character, about (labels are placed without measuring)
const MARK_COLOR = "#1f2933";

/** The x range in bin coordinates (bin i centred on i): the window, at least MIN_COLUMNS wide. */
export function xRange(store) {
  return [store.first - 0.5, store.first + Math.max(store.bins.length, MIN_COLUMNS) - 0.5];
}

function valueText(v) {
  return v === true ? "on" : v === false ? "off" : String(v);
}

/** "retry max 64 → 16" for one control's changes ({field: [before, after]}). */
export function markText(changes) {
  return Object.entries(changes)
    .map(([field, [before, after]]) => `${field.replace(/_/g, " ")} ${valueText(before)} → ${valueText(after)}`)
    .join(", ");
}

/**
 * Lines across the whole figure at each control's simulated time, and labels for the top
 * margin as {text, x (px from the plot's left), anchor}. A label that would run into the
 * one before it is left out (its line stays, and the run's control timeline lists it), so
 * labels never overlap. Labels are HTML (drawLabels): a plotly annotation is measured on
 * every replot, a forced layout each.
 */
export function controlMarks(store, plotWidth) {
  const shapes = [];
  const labels = [];
  const [lo, hi] = xRange(store);
  const binNs = store.binNs || 1;
  const pxPer = plotWidth / (hi - lo);
  let freeFrom = -Infinity; // px: where the previous label ended
  for (const control of store.controls ?? []) {
    const x = control.t_ns / binNs - 0.5;
    if (x < lo || x > hi) continue;
    shapes.push({ type: "line", xref: "x", yref: "paper", x0: x, x1: x, y0: 0, y1: 1,
      line: { color: MARK_COLOR, width: 1, dash: "dot" } });
    const text = markText(control.changes);
    const px = (x - lo) * pxPer;
    const widthPx = text.length * CHAR_PX + 8;
    const rightward = px + widthPx <= plotWidth;
    const left = rightward ? px : px - widthPx;
    if (left < freeFrom || left < -40) continue;
    freeFrom = left + widthPx + 6;
    labels.push({ text, x: px, anchor: rightward ? "left" : "right", kind: "mark" });
  }
  return { shapes, labels };
}

/**
 * Place labels over a figure: each {text, left, top (px in the figure), anchor ("left",
 * "right" or "middle"), rotate, kind}. The DOM is touched only when something moved.
 */
export function drawLabels(el, labels) {
  if (!el) return;
  const key = JSON.stringify(labels);
  if (el.dataset.drawn === key) return;
  el.dataset.drawn = key;
  el.replaceChildren(...labels.map((l) => {
    const span = document.createElement("span");
    span.className = `figure-label figure-label-${l.kind ?? "plain"}`;
    span.textContent = l.text;
    span.style.left = `${Math.round(l.left)}px`;
    span.style.top = `${Math.round(l.top)}px`;
    const dx = l.anchor === "right" ? "-100%" : l.anchor === "middle" ? "-50%" : "0";
    span.style.transform = `translate(${dx}, ${l.middle ? "-50%" : "0"})${l.rotate ? " rotate(-90deg)" : ""}`;
    return span;
  }));
}
