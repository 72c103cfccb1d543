// The caption under the heatmap: which lock the BUSY in the window sits on, which leaf met
// it, and the holder where the server says it knows one (hello.holders).

const fmtInt = new Intl.NumberFormat("en-US");

/** BUSY by (operand, leaf) over the window, from the bins' pairs. */
function pairTotals(series) {
  const totals = new Map();
  for (const pairs of series.pairs) {
    if (!pairs) continue;
    for (const [op, leaf, n] of pairs) {
      const key = op * 1000 + leaf;
      totals.set(key, (totals.get(key) ?? 0) + n);
    }
  }
  return totals;
}

function sum(list) {
  let s = 0;
  for (const v of list) s += v;
  return s;
}

/**
 * One line: "SEPT_TREE: TDH.MEM.PAGE.AUG vs TDH.VP.ENTER (zero-step) · 1,234 of 1,300 BUSY
 * in the window". Operand and leaf names come from hello, holders from hello.holders: a
 * holder is named only when the window shows its activity (e.g. zero-step activations).
 */
export function causeText(store) {
  const { operands, leaves, holders } = store.hello ?? {};
  if (!operands || !leaves) return "";
  const series = store.main;
  const totals = pairTotals(series);
  let best = null;
  let all = 0;
  for (const [key, n] of totals) {
    all += n;
    if (!best || n > best[1]) best = [key, n];
  }
  if (!best) return store.bins.length ? "No BUSY in the window." : "";
  const operand = operands[Math.floor(best[0] / 1000)];
  const leaf = leaves[best[0] % 1000];
  const onOperand = [...totals].filter(([k]) => Math.floor(k / 1000) === Math.floor(best[0] / 1000))
    .reduce((s, [, n]) => s + n, 0);
  let text = `${operand}: ${leaf}`;
  for (const holder of holders ?? []) {
    if (holder.operand !== operand) continue;
    const seen = holder.series === "zero_step" ? sum(series.zeroStep) : 0;
    if (seen > 0) text += ` vs ${holder.leaf} (${holder.label}: ${fmtInt.format(seen)} in the window)`;
  }
  return `${text} · ${fmtInt.format(best[1])} of ${fmtInt.format(onOperand)} BUSY on ${operand}, `
    + `${fmtInt.format(all)} in the window`;
}

export function drawCaption(el, store) {
  const text = causeText(store);
  const line = text ? `Most BUSY: ${text}` : "";
  if (el.textContent !== line) el.textContent = line;
}
