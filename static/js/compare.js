// "Compare with": start a twin of the current run with other live fields (PUT /api/compare),
// or stop it (DELETE); the field lists come from hello, errors from the server.

import { errorMessage, fieldErrors, request } from "./api.js";
import { describeChanges } from "./heatmap.js";

function byId(id) {
  return document.getElementById(id);
}

export class CompareControls {
  constructor(store, { notify, changed }) {
    this.store = store;
    this.notify = notify;
    this.changed = changed;
    this.error = byId("err-compare");
    byId("btn-compare").addEventListener("click", () => this.start());
    byId("btn-compare-off").addEventListener("click", () => this.stop());
  }

  applyHello(hello) {
    const select = byId("c-policy");
    const wanted = ["", ...(hello.policies ?? [])];
    if ([...select.options].map((o) => o.value).join() !== wanted.join()) {
      select.replaceChildren(...wanted.map((name) => {
        const opt = document.createElement("option");
        opt.value = name;
        opt.textContent = name || "(same)";
        return opt;
      }));
    }
    const [lo, hi] = hello.limits?.retry_max ?? [0, 1024];
    Object.assign(byId("c-retry_max"), { min: String(lo), max: String(hi) });
    this.applyState(true);
  }

  /** The body the fields ask for: only the fields given a value. */
  body() {
    const out = {};
    const policy = byId("c-policy").value;
    if (policy) out.policy = policy;
    const retry = byId("c-retry_max").value.trim();
    if (retry !== "") out.retry_max = Number.isInteger(Number(retry)) ? Number(retry) : retry;
    const zs = byId("c-zero_step").value;
    if (zs) out.zero_step = zs === "true";
    return out;
  }

  async start() {
    const body = this.body();
    if (Object.keys(body).length === 0) {
      this.error.textContent = "Choose what the twin changes: a policy, a retry max or zero-step.";
      return;
    }
    const result = await request("PUT", "/api/compare", body);
    if (!result.ok) {
      const problems = fieldErrors(result.data);
      this.error.textContent = problems.length
        ? problems.map((p) => `${p.field}: ${p.message}`).join("; ") : errorMessage(result);
      return;
    }
    this.error.textContent = "";
    this.store.setCompare(result.data);
    this.applyState(true);
    this.notify(`Comparing with a twin: ${describeChanges(result.data.changes)}.`);
    this.changed();
  }

  async stop() {
    const result = await request("DELETE", "/api/compare");
    if (!result.ok) {
      this.error.textContent = errorMessage(result);
      return;
    }
    this.store.setCompare(result.data);
    this.applyState(true);
    this.notify("Stopped comparing (the twin stays in the runs list).");
    this.changed();
  }

  /** Show whether a twin runs, and what it changes. */
  applyState(fill = false) {
    const c = this.store.compare;
    byId("btn-compare-off").disabled = !c.on;
    const info = byId("compare-info");
    info.hidden = !c.on;
    byId("twin-id").textContent = c.on ? `${c.run_id} (${describeChanges(c.changes)})` : "–";
    if (fill && c.on) {
      byId("c-policy").value = c.changes.policy ?? "";
      byId("c-retry_max").value = c.changes.retry_max ?? "";
      byId("c-zero_step").value = c.changes.zero_step === undefined ? "" : String(c.changes.zero_step);
    }
  }
}
