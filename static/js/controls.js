// The controls: built from hello, kept in step with the server's config, and sending
// changes as PATCH /api/config (errors shown at the field, from the server's message).

import {
  errorMessage, exportLabel, exportUrl, fieldErrors, largeExportSize, request, useExportFormats,
} from "./api.js";

const FIELD_LABELS = {
  retry_max: "Retry max", zero_step: "Zero-step mitigation", policy: "Policy", speed: "Speed",
  scenario: "Scenario", vcpus: "vCPUs", module_version: "Module version", seed: "Seed",
};
const INTEGER_FIELDS = new Set(["retry_max", "vcpus", "seed"]);

function inputs() {
  return [...document.querySelectorAll("[data-field]")];
}

function inputFor(field) {
  return document.querySelector(`[data-field="${field}"]`);
}

function setOptions(select, items) {
  const wanted = items.map((i) => (typeof i === "string" ? { name: i } : i));
  const current = [...select.options].map((o) => o.value);
  if (current.length === wanted.length && current.every((v, i) => v === wanted[i].name)) return;
  select.replaceChildren(...wanted.map((item) => {
    const opt = document.createElement("option");
    opt.value = item.name;
    opt.textContent = item.name;
    if (item.description) opt.title = item.description;
    return opt;
  }));
}

/** The value an input holds, typed for the wire; a bad number goes as typed for the server to judge. */
function readValue(el) {
  if (el.type === "checkbox") return el.checked;
  if (el.type === "number") {
    const text = el.value.trim();
    const num = Number(text);
    if (text === "" || !Number.isFinite(num)) return text;
    return INTEGER_FIELDS.has(el.dataset.field) && !Number.isInteger(num) ? text : num;
  }
  return el.value;
}

function writeValue(el, value) {
  if (el.type === "checkbox") el.checked = Boolean(value);
  else if (String(el.value) !== String(value)) el.value = String(value);
}

export function showFieldError(field, message) {
  const el = inputFor(field);
  const out = document.querySelector(`[data-error-for="${field}"]`);
  if (out) out.textContent = message;
  if (el) el.setAttribute("aria-invalid", "true");
}

export function clearFieldError(field) {
  const el = inputFor(field);
  const out = document.querySelector(`[data-error-for="${field}"]`);
  if (out) out.textContent = "";
  if (el) el.removeAttribute("aria-invalid");
}

export class Controls {
  constructor(store, { notify, onRunChanged }) {
    this.store = store;
    this.notify = notify;
    this.onRunChanged = onRunChanged;
    for (const el of inputs()) el.addEventListener("change", () => this.send(el));
    document.getElementById("btn-start").addEventListener("click", () => this.run("start"));
    document.getElementById("btn-pause").addEventListener("click", () => this.run("pause"));
    document.getElementById("btn-reset").addEventListener("click", () => this.run("reset"));
    for (const b of document.querySelectorAll("[data-export]")) {
      b.addEventListener("click", () => this.exportRun(b.dataset.export));
    }
  }

  /** Download the current run's log, saying first how big it will be when it is large. */
  exportRun(format) {
    const records = this.store.totals?.events;
    const size = largeExportSize(format, records);
    document.getElementById("export-size").textContent = size
      ? `${exportLabel(format)}: about ${size} (${records.toLocaleString("en-US")} records); downloading.`
      : "";
    download(exportUrl(format));
  }

  /** Fill selects and limits from hello; the page restates no names of its own. */
  applyHello(hello) {
    useExportFormats(hello);
    setOptions(inputFor("policy"), hello.policies ?? []);
    setOptions(inputFor("module_version"), hello.module_versions ?? []);
    this.applyScenarios(hello.scenarios ?? []);
    for (const [field, [lo, hi]] of Object.entries(hello.limits ?? {})) {
      const el = inputFor(field);
      if (el) { el.min = String(lo); el.max = String(hi); }
    }
    for (const el of inputs()) clearFieldError(el.dataset.field);
    this.applyConfig(hello.config, true);
  }

  /** The scenario list changed (another page uploaded one): keep the choice, add the rest. */
  applyScenarios(scenarios) {
    if (this.store.hello) this.store.hello.scenarios = scenarios;
    const select = inputFor("scenario");
    const chosen = select.value;
    setOptions(select, scenarios);
    if (chosen) select.value = chosen;
  }

  /** "vCPUs set to 1 by zero-step-selftest" for each field the scenario change moved. */
  tdNotes(before, after, body) {
    const scenario = (this.store.hello?.scenarios ?? []).find((s) => s.name === after.scenario);
    const notes = [];
    for (const [field, value] of Object.entries(after)) {
      if (field in body || field === "scenario" || before?.[field] === value) continue;
      const label = FIELD_LABELS[field] ?? field;
      notes.push(scenario && field in (scenario.td ?? {})
        ? `${label} set to ${value} by ${after.scenario}`
        : `${label} back to ${value} (${after.scenario} sets none)`);
    }
    return notes;
  }

  /** Show the server's config; a field being edited or holding a refused value is left alone. */
  applyConfig(config, force = false) {
    if (!config) return;
    for (const el of inputs()) {
      const field = el.dataset.field;
      if (!(field in config)) continue;
      const busy = el === document.activeElement && el.type !== "checkbox" && el.tagName !== "SELECT";
      if (!force && (busy || el.getAttribute("aria-invalid") === "true")) continue;
      writeValue(el, config[field]);
    }
    const scenario = (this.store.hello?.scenarios ?? []).find((s) => s.name === config.scenario);
    document.getElementById("scenario-hint").textContent = scenario?.description ?? "";
  }

  async send(el) {
    const field = el.dataset.field;
    const value = readValue(el);
    const live = (this.store.hello?.live_fields ?? []).includes(field);
    // the config before the change (the run's state broadcast may come before the answer)
    const before = { ...this.store.config };
    const result = await request("PATCH", "/api/config", { [field]: value });
    if (result.ok) {
      clearFieldError(field);
      this.store.config = { ...result.data };
      this.applyConfig(result.data, true);
      const notes = this.tdNotes(before, result.data, { [field]: value });
      if (!live) this.notify(`${FIELD_LABELS[field] ?? field} changed: a new run started${notes.length ? `; ${notes.join("; ")}` : ""}.`);
      this.onRunChanged();
      return;
    }
    const errors = fieldErrors(result.data);
    const mine = errors.filter((e) => e.field === field);
    for (const e of mine) showFieldError(field, e.message);
    if (mine.length === 0) showFieldError(field, errorMessage(result));
    // a switch or a list cannot keep a refused value visibly: show what still holds
    if (el.type === "checkbox" || el.tagName === "SELECT") {
      writeValue(el, this.store.config?.[field] ?? el.value);
    }
  }

  async run(action) {
    const result = await request("POST", `/api/run/${action}`);
    if (!result.ok) {
      this.notify(`${action} refused: ${errorMessage(result)}`, "error");
      return;
    }
    if (action === "reset") {
      const same = result.data?.run_id === this.store.runId;
      this.notify(same ? "Reset: nothing had run yet, so the run is unchanged." : "Reset: a new run from simulated time 0.",
        "info", !same);
    }
    this.onRunChanged(result.data);
  }
}

/** Start a download without leaving the page (the server names the file). */
export function download(url) {
  const a = document.createElement("a");
  a.href = url;
  a.download = "";
  a.hidden = true;
  document.body.append(a);
  a.click();
  a.remove();
}
