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
 * One line: "SEPT_TREE (1,164 BUSY, 100% of the window): TDH.VP.ENTER 910, TDH.MEM.PAGE.AUG
 * 254 vs TDH.VP.ENTER (zero-step: 1,229 activations)". Operand and leaf names come from
 * hello, holders from hello.holders: a holder is named only when the window shows its
 * activity (e.g. zero-step activations).
 */
export function causeText(store) {
  const { operands, leaves, holders } = store.hello ?? {};
  if (!operands || !leaves) return "";
  const series = store.main;
  const totals = pairTotals(series);
  const byOperand = new Map();
  let all = 0;
  for (const [key, n] of totals) {
    all += n;
    const op = Math.floor(key / 1000);
    byOperand.set(op, (byOperand.get(op) ?? 0) + n);
  }
  if (all === 0) return store.bins.length ? "no BUSY in the window" : "";
  const [op, onOperand] = [...byOperand].sort((a, b) => b[1] - a[1])[0];
  const operand = operands[op];
  const hitBy = [...totals].filter(([k]) => Math.floor(k / 1000) === op).sort((a, b) => b[1] - a[1]).slice(0, 2)
    .map(([k, n]) => `${leaves[k % 1000]} ${fmtInt.format(n)}`);
  let text = `${operand} (${fmtInt.format(onOperand)} BUSY, ${Math.round((100 * onOperand) / all)}% of the window): ${hitBy.join(", ")}`;
  for (const holder of holders ?? []) {
    if (holder.operand !== operand) continue;
    const seen = holder.series === "zero_step" ? sum(series.zeroStep) : 0;
    if (seen > 0) text += ` vs ${holder.leaf} (${holder.label}: ${fmtInt.format(seen)} activations)`;
  }
  return text;
}

export function drawCaption(el, store) {
  const text = causeText(store);
  const line = text ? `Most BUSY: ${text}` : "";
  if (el.textContent !== line) el.textContent = line;
}
