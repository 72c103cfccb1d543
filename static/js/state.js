// What the page knows: the hello, the current config and run, and a window of bins of
// fixed simulated width for the run and (when comparing) its twin, aligned by bin index.

export const WINDOW_BINS = 600;
const binTime = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });

/** One run's counts per bin: rows of BUSY by operand and by leaf, and the timeline series. */
class Series {
  constructor(operands, leaves) {
    this.operands = operands.map(() => []);
    this.leaves = leaves.map(() => []);
    this.retries = [];
    this.giveups = [];
    this.attempts = [];
    this.zeroStep = [];
    this.pairs = []; // per bin: [[operand index, leaf index, n], ...]
    this.ran = []; // per bin: [[leaf index, calls that got their locks], ...]
    this.callsWhole = new Map(); // completed calls by attempts, over the run
    this.callsSince = new Map(); // the same since retry max or policy last changed
    this.totals = null;
    this.frame = null;
  }

  /** One more (empty) bin at the right. */
  grow() {
    for (const row of this.operands) row.push(0);
    for (const row of this.leaves) row.push(0);
    this.retries.push(0);
    this.giveups.push(0);
    this.attempts.push(0);
    this.zeroStep.push(0);
    this.pairs.push(null);
    this.ran.push(null);
  }

  dropOldest(n) {
    for (const rows of [this.operands, this.leaves]) for (const row of rows) row.splice(0, n);
    for (const s of [this.retries, this.giveups, this.attempts, this.zeroStep, this.pairs, this.ran]) s.splice(0, n);
  }

  /** Add a piece of bin `col` (pieces of one bin from consecutive frames add up). */
  add(col, p) {
    const busy = p.busy ?? [];
    for (let r = 0; r < this.operands.length; r++) this.operands[r][col] += busy[r] ?? 0;
    const leaf = p.leaf ?? [];
    for (let r = 0; r < this.leaves.length; r++) this.leaves[r][col] += leaf[r] ?? 0;
    this.retries[col] += p.retries ?? 0;
    this.giveups[col] += p.giveups ?? 0;
    this.attempts[col] += p.attempts ?? 0;
    this.zeroStep[col] += p.zero_step ?? 0;
    if (p.pairs && p.pairs.length) this.pairs[col] = (this.pairs[col] ?? []).concat(p.pairs);
    if (p.ran && p.ran.length) this.ran[col] = (this.ran[col] ?? []).concat(p.ran);
  }

  /** A frame's histogram and totals. */
  takeFrame(f) {
    for (const [k, n] of Object.entries(f.calls_by_attempts ?? {})) {
      if (n) this.callsWhole.set(Number(k), (this.callsWhole.get(Number(k)) ?? 0) + n);
    }
    this.callsSince = new Map(Object.entries(f.calls_since_change ?? {}).map(([k, n]) => [Number(k), n]));
    if (f.totals) this.totals = f.totals;
    this.frame = f;
  }
}

/**
 * The dashboard's model. Frames mutate arrays in place (cheap per frame); `revision` grows
 * on every change so the plots know to redraw (Plotly.react + datarevision).
 */
export class Store {
  constructor() {
    this.hello = null;
    this.config = null;
    this.runId = null;
    this.state = null;
    this.revision = 0;
    this.callsRevision = 0;
    this.compare = { on: false, changes: {}, run_id: null };
    this.controls = [];
    this.binNs = 0;
    this.pace = null;
    this.resetSeries();
  }

  get operandNames() { return this.hello?.operands ?? []; }
  get leafNames() { return this.hello?.leaves ?? []; }

  resetSeries() {
    this.first = 0; // bin index of the window's first column
    this.bins = []; // bin indices, one per column (the heatmap's x)
    this.x = []; // bin centres, simulated microseconds
    this.xText = []; // bin spans written out for hover text
    this.main = new Series(this.operandNames, this.leafNames);
    this.twin = new Series(this.operandNames, this.leafNames);
    this.lastFrame = null;
    this.totals = null;
    this.callsRevision += 1;
    this.revision += 1;
  }

  /** The twin's counters start afresh (a new twin, or compare turned off). */
  resetTwin() {
    this.twin = new Series(this.operandNames, this.leafNames);
    for (let i = 0; i < this.bins.length; i++) this.twin.grow(); // aligned with the window's columns
    this.callsRevision += 1;
    this.revision += 1;
  }

  applyHello(msg) {
    const sameRun = this.hello !== null && msg.run_id === this.runId
      && sameNames(this.hello.operands, msg.operands) && sameNames(this.hello.leaves, msg.leaves);
    this.hello = msg;
    this.config = { ...msg.config };
    this.state = msg.state;
    this.runId = msg.run_id;
    this.binNs = msg.bin_ns || this.binNs;
    this.controls = msg.controls ?? [];
    // after a reconnect to the same run keep the history; anything else starts afresh
    if (!sameRun) this.resetSeries();
    this.setCompare(msg.compare);
    this.revision += 1;
    return !sameRun;
  }

  setCompare(compare) {
    const next = compare ?? { on: false, changes: {}, run_id: null };
    if (next.run_id !== this.compare.run_id) this.resetTwin();
    this.compare = next;
  }

  /** Returns true when the message starts a new run (so the series were cleared). */
  applyState(msg) {
    const newRun = msg.run_id !== undefined && msg.run_id !== this.runId;
    if (msg.config) this.config = { ...msg.config };
    if (msg.state) this.state = msg.state;
    if (newRun) this.startRun(msg.run_id);
    if (msg.bin_ns) this.binNs = msg.bin_ns;
    if (msg.controls) this.controls = msg.controls;
    this.setCompare(msg.compare);
    this.revision += 1;
    return newRun;
  }

  startRun(runId) {
    this.runId = runId;
    this.controls = [];
    this.pace = null;
    this.resetSeries();
  }

  /** The column of bin `index`, growing the window to it; -1 if it is left of the window. */
  column(index) {
    if (this.bins.length === 0) this.first = index;
    if (index < this.first) return -1;
    while (this.first + this.bins.length <= index) {
      const i = this.first + this.bins.length;
      const us = this.binNs / 1000;
      this.bins.push(i);
      this.x.push((i + 0.5) * us);
      this.xText.push(`${binTime.format(i * us)}–${binTime.format((i + 1) * us)}`);
      this.main.grow();
      this.twin.grow();
    }
    const excess = this.bins.length - WINDOW_BINS;
    if (excess > 0) {
      for (const s of [this.bins, this.x, this.xText]) s.splice(0, excess);
      this.main.dropOldest(excess);
      this.twin.dropOldest(excess);
      this.first += excess;
    }
    return index - this.first;
  }

  /** Fold one frame into the window; returns true when it started a new run. */
  applyFrame(f) {
    let newRun = false;
    if (f.run_id !== undefined && f.run_id !== this.runId) {
      this.startRun(f.run_id);
      newRun = true;
    }
    if (f.bin_ns) this.binNs = f.bin_ns;
    for (const p of f.bins ?? []) this.main.add(this.column(p.i), p);
    this.main.takeFrame(f);
    const twin = f.twin;
    if (twin && twin.run_id === this.compare.run_id) {
      for (const p of twin.bins ?? []) {
        // a twin catching up sends old bins: those left of the window are only counted
        if (p.i >= this.first) this.twin.add(this.column(p.i), p);
      }
      this.twin.takeFrame(twin);
    }
    this.callsRevision += 1;
    if (typeof f.retry_max === "number" && this.config) this.config.retry_max = f.retry_max;
    if (f.pace) this.pace = f.pace;
    this.lastFrame = f;
    if (f.totals) this.totals = f.totals;
    this.revision += 1;
    return newRun;
  }

  /** True while a twin runs beside the current run. */
  get comparing() {
    return Boolean(this.compare?.on);
  }
}

function sameNames(a, b) {
  return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((v, i) => v === b[i]);
}
