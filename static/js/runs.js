// The list of runs kept by the server, newest first, each with its own export links; a
// row opens the run's summary (by leaf, by operand) and its control timeline.

import { exportChoices, exportUrl, largeExportSize, request } from "./api.js";
import { markText } from "./marks.js";

// Until hello has listed them (Perfetto's native trace first).
const FORMATS = [["perfetto", "Perfetto trace"], ["jsonl", "JSONL"], ["csv", "CSV"],
  ["chrome", "Chrome trace"]];
const MAX_ROWS = 50;
const COLUMNS = 13;
const fmtInt = new Intl.NumberFormat("en-US");
const opened = new Set(); // run ids whose details are open
let listed = []; // the last list fetched

function cell(text, label) {
  const td = document.createElement("td");
  td.textContent = text ?? "–";
  if (label) td.dataset.label = label;
  return td;
}

function createdCell(value) {
  const date = typeof value === "number" ? new Date(value < 1e12 ? value * 1000 : value) : new Date(value);
  if (value === undefined || value === null || Number.isNaN(date.getTime())) return cell(value ?? "–", "Created");
  // the time of day is what tells today's runs apart; the whole date is on hover
  const today = date.toDateString() === new Date().toDateString();
  const td = cell(today ? date.toLocaleTimeString() : date.toLocaleString(), "Created");
  td.title = date.toLocaleString();
  return td;
}

const num = (v) => (typeof v === "number" ? fmtInt.format(v) : "–");
const onOff = (v) => (v === true ? "on" : v === false ? "off" : "–");

function runCell(run) {
  const td = cell("", "Run");
  const button = document.createElement("button");
  button.type = "button";
  button.className = "link";
  button.textContent = run.run_id;
  button.setAttribute("aria-expanded", String(opened.has(run.run_id)));
  button.setAttribute("aria-label", `Details of run ${run.run_id}`);
  button.addEventListener("click", () => toggle(run.run_id));
  td.append(button);
  const tags = [];
  if (run.twin_of) tags.push(["twin", `twin of ${run.twin_of}`]);
  if (run.changed_live) tags.push(["changed live", `${run.controls} live change(s)`]);
  for (const [text, title] of tags) {
    const tag = document.createElement("span");
    tag.className = "tag";
    tag.textContent = text;
    tag.title = title;
    td.append(" ", tag);
  }
  return td;
}

function row(run, currentId) {
  const tr = document.createElement("tr");
  tr.dataset.runId = run.run_id;
  tr.dataset.current = String(run.run_id === currentId);
  const c = run.config ?? {};
  const s = run.summary ?? {};
  tr.append(runCell(run), createdCell(run.created), cell(c.scenario, "Scenario"),
    cell(c.policy, "Policy"), cell(c.retry_max, "Retry max"), cell(onOff(c.zero_step), "Zero-step"),
    cell(c.module_version, "Module"), cell(c.vcpus, "vCPUs"), cell(c.seed, "Seed"),
    cell(num(s.attempts), "Attempts"), cell(num(s.busy), "BUSY"), cell(num(s.giveups), "Give-ups"));
  tr.children[9].dataset.count = "attempts";
  tr.children[10].dataset.count = "busy";
  tr.children[11].dataset.count = "giveups";
  const links = cell("", "Exports");
  const choices = exportChoices();
  for (const [format, label] of choices.length ? choices : FORMATS) {
    const a = document.createElement("a");
    a.href = exportUrl(format, run.run_id);
    a.download = "";
    const size = largeExportSize(format, s.events);
    a.textContent = size ? `${label} (about ${size})` : label;
    if (size) a.title = `about ${size}: a large file`;
    a.setAttribute("aria-label", `Download run ${run.run_id} as ${label}`);
    links.append(a);
  }
  tr.append(links);
  return tr;
}

function table(caption, head, rows) {
  const t = document.createElement("table");
  t.className = "mini";
  const cap = document.createElement("caption");
  cap.textContent = caption;
  const thead = document.createElement("tr");
  for (const h of head) {
    const th = document.createElement("th");
    th.textContent = h;
    thead.append(th);
  }
  t.append(cap, thead);
  for (const r of rows) {
    const tr = document.createElement("tr");
    for (const v of r) tr.append(cell(v));
    t.append(tr);
  }
  return t;
}

/** The run's summary by leaf and by operand, and its control timeline. */
function details(run) {
  const tr = document.createElement("tr");
  tr.className = "details";
  tr.dataset.detailsFor = run.run_id;
  const td = document.createElement("td");
  td.colSpan = COLUMNS;
  const s = run.summary ?? {};
  const leaves = Object.entries(s.by_leaf ?? {}).map(([leaf, c]) => [leaf, num(c.attempts), num(c.busy), num(c.retries), num(c.giveups)]);
  const operands = Object.entries(s.busy_by_operand ?? {}).filter(([, n]) => n > 0).map(([op, n]) => [op, num(n)]);
  let config = { ...(run.config ?? {}) };
  const timeline = (run.timeline ?? []).map((c) => {
    const changes = Object.fromEntries(Object.entries(c.changes).map(([k, v]) => [k, [config[k], v]]));
    config = { ...config, ...c.changes };
    return [`${(c.t_ns / 1000).toLocaleString("en-US")} µs`, markText(changes)];
  });
  const box = document.createElement("div");
  box.className = "run-details";
  box.append(table("By leaf", ["leaf", "attempts", "BUSY", "retries", "give-ups"], leaves),
    table("BUSY by operand", ["operand", "BUSY"], operands.length ? operands : [["(none)", "0"]]),
    table(run.twin_of ? `Control timeline (twin of ${run.twin_of})` : "Control timeline", ["simulated time", "change"],
      timeline.length ? timeline : [["–", "no live changes"]]));
  td.append(box);
  tr.append(td);
  return tr;
}

function toggle(runId) {
  if (opened.has(runId)) opened.delete(runId);
  else opened.add(runId);
  render(listed, currentId);
}

let currentId = null;
function render(runs, current) {
  const body = document.getElementById("runs-body");
  const rows = [];
  for (const run of runs.slice(0, MAX_ROWS)) {
    rows.push(row(run, current));
    if (opened.has(run.run_id)) rows.push(details(run));
  }
  body.replaceChildren(...rows);
}

/** Fetch GET /api/runs and redraw the table. */
export async function refreshRuns(store) {
  const body = document.getElementById("runs-body");
  const result = await request("GET", "/api/runs");
  if (!result.ok || !Array.isArray(result.data)) {
    body.replaceChildren(messageRow(`Could not load runs (HTTP ${result.status}).`));
    return;
  }
  if (result.data.length === 0) {
    body.replaceChildren(messageRow("No runs yet."));
    return;
  }
  listed = result.data;
  currentId = store.runId;
  render(listed, currentId);
}

/** The current run's (and its twin's) counts follow the frames, not the last fetch. */
export function updateCurrentRow(store) {
  const pairs = [[store.runId, store.totals]];
  if (store.comparing) pairs.push([store.compare.run_id, store.twin.totals]);
  for (const [runId, totals] of pairs) {
    if (!runId || !totals) continue;
    const tr = document.querySelector(`#runs-body tr[data-run-id="${CSS.escape(runId)}"]`);
    if (!tr) continue;
    for (const td of tr.querySelectorAll("td[data-count]")) {
      const text = num(totals[td.dataset.count]);
      if (td.textContent !== text) td.textContent = text;
    }
  }
}

function messageRow(text) {
  const tr = document.createElement("tr");
  const td = cell(text);
  td.colSpan = COLUMNS;
  tr.append(td);
  return tr;
}
