// What the page knows: the hello, the current config and run, and a sliding window of bins.

export const WINDOW_BINS = 600;
const binTime = new Intl.NumberFormat("en-US", { minimumFractionDigits: 1, maximumFractionDigits: 1 });

/** One bin per frame for a fixed list of row names (operands or leaves). */
class BinGrid {
  constructor(names, hoverRow) {
    this.names = names;
    this.z = names.map(() => []);
    // hover text per cell, same shape as z; the strings are shared, so this is cheap
    this.custom = names.map((name) => ({ value: hoverRow(name), cells: [] }));
    this.customdata = this.custom.map((c) => c.cells);
  }

  push(counts) {
    const { names, z, custom } = this;
    for (let i = 0; i < names.length; i++) {
      z[i].push(counts?.[names[i]] ?? 0);
      custom[i].cells.push(custom[i].value);
    }
  }

  dropOldest(n) {
    for (let i = 0; i < this.z.length; i++) {
      this.z[i].splice(0, n);
      this.custom[i].cells.splice(0, n);
    }
  }
}

/**
 * The dashboard's model. Frames mutate the arrays in place (cheap per frame); `revision`
 * grows on every change so the plots know to redraw (Plotly.react + datarevision).
 */
export class Store {
  constructor() {
    this.hello = null;
    this.config = null;
    this.runId = null;
    this.state = null;
    this.revision = 0;
    this.lastFrame = null;
    this.totals = null;
    this.resetSeries([], [], {});
  }

  resetSeries(operands, leaves, busyStatus) {
    this.x = []; // bin end, simulated microseconds
    this.bins = []; // bin number since the run's start (the heatmap's x: a linear scale)
    this.binCount = 0;
    this.xText = []; // the same, written out for hover text ("12,345.6")
    this.retries = [];
    this.giveups = [];
    this.attempts = [];
    this.zeroStep = [];
    this.operands = new BinGrid(operands, (name) => busyStatus[name] ?? "n/a");
    this.leaves = new BinGrid(leaves, () => "");
    this.callsByAttempts = new Map();
    // grows whenever callsByAttempts changes (never goes back: a new run is a change too)
    this.callsRevision = (this.callsRevision ?? 0) + 1;
    this.lastFrame = null;
    this.totals = null;
    this.revision += 1;
  }

  applyHello(msg) {
    const sameRun = this.hello !== null && msg.run_id === this.runId
      && sameNames(this.hello.operands, msg.operands) && sameNames(this.hello.leaves, msg.leaves);
    this.hello = msg;
    this.config = { ...msg.config };
    this.state = msg.state;
    this.runId = msg.run_id;
    // after a reconnect to the same run keep the history; anything else starts afresh
    if (!sameRun) this.resetSeries(msg.operands ?? [], msg.leaves ?? [], msg.busy_status ?? {});
    this.revision += 1;
    return !sameRun;
  }

  /** Returns true when the message starts a new run (so the series were cleared). */
  applyState(msg) {
    const newRun = msg.run_id !== undefined && msg.run_id !== this.runId;
    if (msg.config) this.config = { ...msg.config };
    if (msg.state) this.state = msg.state;
    if (newRun) this.startRun(msg.run_id);
    this.revision += 1;
    return newRun;
  }

  startRun(runId) {
    this.runId = runId;
    const h = this.hello ?? {};
    this.resetSeries(h.operands ?? [], h.leaves ?? [], h.busy_status ?? {});
  }

  /** Fold one frame into the window; returns true when it started a new run. */
  applyFrame(f) {
    let newRun = false;
    if (f.run_id !== undefined && f.run_id !== this.runId) {
      this.startRun(f.run_id);
      newRun = true;
    }
    this.x.push(f.t_ns / 1000);
    this.bins.push(this.binCount++);
    this.xText.push(binTime.format(f.t_ns / 1000));
    this.retries.push(f.retries ?? 0);
    this.giveups.push(f.giveups ?? 0);
    this.attempts.push(f.attempts ?? 0);
    const zs = f.zero_step_activations ?? 0;
    this.zeroStep.push(zs);
    this.operands.push(f.busy);
    this.leaves.push(f.busy_by_leaf);
    for (const [k, n] of Object.entries(f.calls_by_attempts ?? {})) {
      if (!n) continue;
      const a = Number(k);
      this.callsByAttempts.set(a, (this.callsByAttempts.get(a) ?? 0) + n);
      this.callsRevision += 1;
    }
    if (typeof f.retry_max === "number" && this.config) this.config.retry_max = f.retry_max;
    const excess = this.x.length - WINDOW_BINS;
    if (excess > 0) {
      for (const series of [this.x, this.bins, this.xText, this.retries, this.giveups, this.attempts, this.zeroStep]) {
        series.splice(0, excess);
      }
      this.operands.dropOldest(excess);
      this.leaves.dropOldest(excess);
    }
    this.lastFrame = f;
    if (f.totals) this.totals = f.totals;
    this.revision += 1;
    return newRun;
  }
}

function sameNames(a, b) {
  return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((v, i) => v === b[i]);
}
