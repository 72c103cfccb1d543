// The Sweeps view: start a built-in or uploaded sweep, follow it (polling), cancel it,
// and draw its give-up curves and answer table. Every name comes from the server.

import { errorMessage, fieldErrors, pageToken } from "./api.js";

const POLL_MS = 1000;
// one colour per line, shared by its rate markers and its "no give-ups" markers
const COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
  "#17becf", "#7f7f7f", "#bcbd22"];
const els = {
  builtin: document.getElementById("builtin"),
  upload: document.getElementById("upload"),
  text: document.getElementById("sweep-text"),
  errors: document.getElementById("start-errors"),
  start: document.getElementById("btn-start-sweep"),
  list: document.getElementById("sweep-list"),
  title: document.getElementById("sweep-title"),
  meta: document.getElementById("sweep-meta"),
  progress: document.getElementById("sweep-progress"),
  status: document.getElementById("sweep-status"),
  cancel: document.getElementById("btn-cancel-sweep"),
  files: document.getElementById("sweep-files"),
  figure: document.getElementById("sweep-figure"),
  answerHead: document.getElementById("answer-head"),
  answerBody: document.getElementById("answer-body"),
};
const state = { builtins: [], selected: null, last: null, drawnRows: -1 };
// The token: the server's HttpOnly cookie carries it (set when a page was opened with
// ?token=...); a ?token= on this page itself is also sent in the Authorization header.
const token = pageToken();

async function call(method, path, body, contentType) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = contentType;
  if (token && method !== "GET") headers["Authorization"] = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(path, { method, headers, body });
  } catch (err) {
    return { ok: false, status: 0, data: { message: `network error: ${err.message}` } };
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { message: text };
  }
  return { ok: response.ok, status: response.status, data };
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  row.append(td);
  return td;
}

function timeLeft(s) {
  if (s === null || s === undefined) return "";
  if (s >= 60) return `, about ${Math.floor(s / 60)} min ${Math.round(s % 60)} s left`;
  return `, about ${Math.round(s)} s left`;
}

async function loadBuiltins() {
  const result = await call("GET", "/api/sweep-builtins");
  if (!result.ok) return;
  state.builtins = result.data;
  els.builtin.replaceChildren(...state.builtins.map((b) => new Option(b.name, b.name)));
  // Text typed or uploaded before the list arrived is the user's: never overwrite it.
  if (state.builtins.length && !els.text.value.trim()) els.text.value = state.builtins[0].text;
}

els.builtin.addEventListener("change", () => {
  const found = state.builtins.find((b) => b.name === els.builtin.value);
  if (found) els.text.value = found.text;
});

els.upload.addEventListener("change", async () => {
  const file = els.upload.files[0];
  if (file) els.text.value = await file.text();
});

els.start.addEventListener("click", async () => {
  els.errors.replaceChildren();
  els.start.disabled = true;
  const result = await call("POST", "/api/sweeps", els.text.value, "application/toml");
  els.start.disabled = false;
  if (!result.ok) {
    const problems = fieldErrors(result.data);
    const lines = problems.length ? problems.map((p) => `${p.field}: ${p.message}`)
      : [errorMessage(result)];
    els.errors.replaceChildren(...lines.map((line) => {
      const li = document.createElement("li");
      li.textContent = line;
      return li;
    }));
    return;
  }
  select(result.data.sweep_id);
  refreshList();
});

els.cancel.addEventListener("click", async () => {
  if (!state.selected) return;
  els.cancel.disabled = true;
  const result = await call("DELETE", `/api/sweeps/${encodeURIComponent(state.selected)}`);
  if (!result.ok) els.status.textContent = errorMessage(result);
  poll();
});

async function refreshList() {
  const result = await call("GET", "/api/sweeps");
  if (!result.ok) return;
  const rows = result.data.map((s) => {
    const tr = document.createElement("tr");
    tr.setAttribute("aria-selected", String(s.sweep_id === state.selected));
    const name = cell(tr, s.name);
    const id = document.createElement("span");
    id.className = "id";
    id.textContent = s.sweep_id;
    name.append(id);
    cell(tr, s.state, "state").dataset.state = s.state;
    cell(tr, `${s.done}/${s.total}`);
    const td = cell(tr, "");
    const show = document.createElement("button");
    show.type = "button";
    show.textContent = "Show";
    show.setAttribute("aria-label", `Show sweep ${s.sweep_id}`);
    show.addEventListener("click", () => select(s.sweep_id));
    td.append(show);
    return tr;
  });
  if (!rows.length) {
    const tr = document.createElement("tr");
    cell(tr, "No sweeps yet").colSpan = 4;
    rows.push(tr);
  }
  els.list.replaceChildren(...rows);
}

function select(sweepId) {
  state.selected = sweepId;
  state.drawnRows = -1;
  poll();
}

function link(name, sweepId) {
  const a = document.createElement("a");
  a.href = `/api/sweeps/${encodeURIComponent(sweepId)}/${name}`;
  a.textContent = name;
  a.target = "_blank";
  return a;
}

async function poll() {
  if (!state.selected) return;
  const result = await call("GET", `/api/sweeps/${encodeURIComponent(state.selected)}`);
  if (!result.ok) {
    els.status.textContent = errorMessage(result);
    return;
  }
  const s = result.data;
  state.last = s;
  els.title.textContent = `Sweep ${s.name} (${s.sweep_id})`;
  els.meta.textContent = `scenario ${s.scenario}, ${s.duration_us} µs a run, seeds 1..${s.seeds}`;
  els.progress.max = Math.max(s.total, 1);
  els.progress.value = s.done;
  const failed = s.failed ? `, ${s.failed} failed` : "";
  const eta = s.state === "running" ? timeLeft(s.eta_s) : "";
  const error = s.error ? ` (${s.error})` : "";
  els.status.textContent = `${s.state}: ${s.done} of ${s.total} rows${failed}${eta}${error}`;
  els.status.dataset.state = s.state;
  els.cancel.disabled = !(s.state === "queued" || s.state === "running");
  els.files.replaceChildren(...["report.html", "summary.csv", "points.csv"].map((n) => link(n, s.sweep_id)));
  if (s.done !== state.drawnRows) {
    state.drawnRows = s.done;
    drawFigure(s.curves);
    drawAnswers(s);
  }
}

function drawFigure(curves) {
  if (!window.Plotly || !curves || !curves.x_axis) return;
  const retry = curves.x_axis === "retry_max";
  const traces = [];
  curves.lines.forEach((line, n) => {
    const colour = COLOURS[n % COLOURS.length];
    const x = line.x.map((v) => (retry ? v + 1 : String(v)));
    const positive = line.rate.map((r) => r !== null && r > 0);
    traces.push({
      type: "scatter", mode: "lines+markers", name: line.name, legendgroup: line.name, x,
      y: line.rate.map((r, i) => (positive[i] ? r : null)), connectgaps: true,
      line: { color: colour }, marker: { color: colour },
      error_y: { type: "data", visible: true, thickness: 1,
        array: line.hi.map((h, i) => (positive[i] ? h - line.rate[i] : 0)),
        arrayminus: line.lo.map((l, i) => (positive[i] ? line.rate[i] - l : 0)) },
      text: line.giveups.map((g, i) => `${g} give-ups of ${line.calls[i]} calls`),
    });
    traces.push({
      type: "scatter", mode: "markers", legendgroup: line.name, showlegend: false, x,
      name: `${line.name}: no give-ups (upper bound)`,
      y: line.hi.map((h, i) => (positive[i] ? null : h)),
      marker: { symbol: "triangle-down", size: 9, color: colour },
    });
  });
  const ticks = retry && curves.lines.length ? curves.lines[0].x : [];
  const layout = {
    margin: { t: 20, l: 70, r: 10, b: 50 }, height: 420,
    xaxis: retry ? { type: "log", title: { text: "retry max (log scale; 0 at the left)" },
      tickvals: ticks.map((t) => t + 1), ticktext: ticks.map(String) }
      : { type: "category", title: { text: curves.x_axis } },
    yaxis: { type: "log", exponentformat: "power",
      title: { text: "give-ups per logical call (95% Wilson)" } },
    shapes: [{ type: "line", xref: "paper", x0: 0, x1: 1, y0: 1e-3, y1: 1e-3,
      line: { dash: "dot", color: "#555" } }],
    legend: { orientation: "h", y: -0.2 },
  };
  window.Plotly.react(els.figure, traces, layout, { displaylogo: false, responsive: true });
}

function drawAnswers(s) {
  const axes = s.answer_axes || [];
  const head = document.createElement("tr");
  [...axes, "smallest retry_max"].forEach((name) => {
    const th = document.createElement("th");
    th.textContent = name;
    head.append(th);
  });
  els.answerHead.replaceChildren(head);
  els.answerBody.replaceChildren(...(s.answers || []).map((row) => {
    const tr = document.createElement("tr");
    axes.forEach((a) => cell(tr, String(row[a])));
    cell(tr, row.answer, row.answer.startsWith("none") ? "none" : "");
    return tr;
  }));
}

function whenPlotly() {
  return new Promise((resolve) => {
    if (window.Plotly) resolve();
    else window.addEventListener("load", () => resolve(), { once: true });
  });
}

await whenPlotly();
await loadBuiltins();
await refreshList();
setInterval(() => { poll(); refreshList(); }, POLL_MS);
window.tdxSweeps = state;
