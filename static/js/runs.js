// The list of runs kept by the server, newest first, each with its own export links.

import { exportChoices, exportUrl, largeExportSize, request } from "./api.js";

// Until hello has listed them (Perfetto's native trace first).
const FORMATS = [["perfetto", "Perfetto trace"], ["jsonl", "JSONL"], ["csv", "CSV"],
  ["chrome", "Chrome trace"]];
const MAX_ROWS = 50;
const fmtInt = new Intl.NumberFormat("en-US");

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text ?? "–";
  return td;
}

function created(value) {
  if (value === undefined || value === null) return "–";
  const date = typeof value === "number" ? new Date(value < 1e12 ? value * 1000 : value) : new Date(value);
  return Number.isNaN(date.getTime()) ? String(value) : date.toLocaleString();
}

function row(run, currentId) {
  const tr = document.createElement("tr");
  tr.dataset.runId = run.run_id;
  tr.dataset.current = String(run.run_id === currentId);
  const c = run.config ?? {};
  const s = run.summary ?? {};
  const num = (v) => (typeof v === "number" ? fmtInt.format(v) : "–");
  tr.append(cell(run.run_id), cell(created(run.created)), cell(c.scenario), cell(c.policy),
    cell(c.vcpus), cell(num(s.attempts)), cell(num(s.busy)), cell(num(s.giveups)));
  const links = document.createElement("td");
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

/** Fetch GET /api/runs and redraw the table. */
export async function refreshRuns(currentId) {
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
  body.replaceChildren(...result.data.slice(0, MAX_ROWS).map((r) => row(r, currentId)));
}

function messageRow(text) {
  const tr = document.createElement("tr");
  const td = cell(text);
  td.colSpan = 9;
  tr.append(td);
  return tr;
}
