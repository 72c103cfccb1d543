// The caption under the heatmap: which lock the BUSY in the window sits on, which leaf met
// it, and the leaves that could have held it: those whose lock set conflicts on that lock
// (hello.conflicts, from the module's lock tables) and that got their locks in the window,
// plus holders the lock sets cannot show (hello.holders: zero-step's TDH.VP.ENTER).

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

/** Calls that got their locks, by leaf index, over the window. */
function ranTotals(series) {
  const totals = new Map();
  for (const ran of series.ran ?? []) {
    if (!ran) continue;
    for (const [leaf, n] of ran) totals.set(leaf, (totals.get(leaf) ?? 0) + n);
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
 * hello. For the leaf with most BUSY, "vs" names up to two leaves whose lock set conflicts
 * with it on that lock and that got their locks in the window (the holder was one of them;
 * per-GPA locks conflict only on one GPA, which the counts cannot tell), and any
 * hello.holders entry whose activity the window shows (zero-step activations).
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
  const top = leaves[topLeaf(totals, op)];
  const table = store.hello.conflicts?.[store.config?.module_version]?.[operand]?.[top] ?? [];
  const ran = ranTotals(series);
  const index = new Map(leaves.map((name, i) => [name, i]));
  const against = table.map((name) => [name, ran.get(index.get(name)) ?? 0]).filter(([, n]) => n > 0)
    .sort((a, b) => b[1] - a[1]).slice(0, 2).map(([name, n]) => `${name} (${fmtInt.format(n)} calls)`);
  if (against.length) text += ` vs ${against.join(" or ")}`;
  for (const holder of holders ?? []) {
    if (holder.operand !== operand) continue;
    const seen = holder.series === "zero_step" ? sum(series.zeroStep) : 0;
    if (seen > 0) {
      text += `${against.length ? " or" : " vs"} ${holder.leaf} (${holder.label}: ${fmtInt.format(seen)} activations)`;
    }
  }
  return text;
}

/** The leaf index with the most BUSY on operand `op`. */
function topLeaf(totals, op) {
  let best = -1;
  let most = -1;
  for (const [k, n] of totals) {
    if (Math.floor(k / 1000) === op && n > most) [best, most] = [k % 1000, n];
  }
  return best;
}

export function drawCaption(el, store) {
  const text = causeText(store);
  const line = text ? `Most BUSY: ${text}` : "";
  if (el.textContent !== line) el.textContent = line;
}
