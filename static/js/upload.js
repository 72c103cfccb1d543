// Scenario upload: a file picker or a text area, POST /api/scenarios, and the server's
// 422 messages shown under the lines they are about.

import { errorMessage, fieldErrors, pageToken } from "./api.js";

function byId(id) {
  return document.getElementById(id);
}

function escapeRe(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/**
 * The 1-based line a problem is about: TOML's own "(at line N" if it says so, else the
 * line that sets the key it names ("td.vcpus": `vcpus =` under `[td]`; "zap[1].pages":
 * under the second `[[zap]]`), else the table's header, else null.
 */
export function lineOf(text, field, message) {
  const lines = text.split("\n");
  const at = /at line (\d+)/.exec(message ?? "");
  if (at) return Number(at[1]);
  if (/end of document/.test(message ?? "")) return lines.length;
  const parts = (field ?? "").split(".");
  const key = parts.pop();
  let from = 0;
  let to = lines.length;
  if (parts.length) {
    const m = /^(.*?)(?:\[(\d+)\])?$/.exec(parts.join("."));
    const header = new RegExp(`^\\s*\\[\\[?\\s*${escapeRe(m[1])}\\s*\\]\\]?\\s*(#.*)?$`);
    let nth = Number(m[2] ?? 0);
    from = -1;
    for (let i = 0; i < lines.length; i++) {
      if (header.test(lines[i]) && nth-- === 0) { from = i; break; }
    }
    if (from < 0) return null;
    to = lines.findIndex((l, i) => i > from && /^\s*\[/.test(l));
    if (to < 0) to = lines.length;
  } else {
    const firstTable = lines.findIndex((l) => /^\s*\[/.test(l));
    if (firstTable >= 0) to = firstTable;
  }
  const keyRe = new RegExp(`^\\s*"?${escapeRe(key ?? "")}"?\\s*=`);
  for (let i = from; i < to; i++) if (i >= 0 && keyRe.test(lines[i])) return i + 1;
  return parts.length ? from + 1 : null;
}

export class Upload {
  constructor({ notify }) {
    this.notify = notify;
    byId("scenario-file").addEventListener("change", (event) => this.pick(event.target.files[0]));
    byId("btn-upload").addEventListener("click", () => this.send());
  }

  async pick(file) {
    if (!file) return;
    byId("scenario-text").value = await file.text();
    await this.send();
  }

  async send() {
    const text = byId("scenario-text").value;
    const headers = { "Content-Type": "application/toml" };
    if (pageToken()) headers.Authorization = `Bearer ${pageToken()}`;
    let response;
    let data = null;
    try {
      response = await fetch("/api/scenarios", { method: "POST", headers, body: text });
      data = await response.json().catch(() => null);
    } catch (err) {
      this.show(text, [], `Upload failed: ${err.message}`);
      return;
    }
    if (response.ok) {
      this.show(text, [], `Scenario ${data?.name} accepted: choose it under Scenario.`);
      this.notify(`Scenario ${data?.name} uploaded.`);
      return;
    }
    const problems = fieldErrors(data);
    this.show(text, problems, problems.length ? `Refused (HTTP ${response.status}):` : errorMessage({ data, status: response.status }));
  }

  /** The text with each problem under its line; problems with no line go first. */
  show(text, problems, summary) {
    byId("upload-result").textContent = summary;
    const list = byId("upload-lines");
    if (!problems.length) {
      list.hidden = true;
      list.replaceChildren();
      return;
    }
    const byLine = new Map();
    for (const p of problems) {
      const line = lineOf(text, p.field, p.message) ?? 0;
      byLine.set(line, [...(byLine.get(line) ?? []), p]);
    }
    const items = [];
    const lines = text.split("\n");
    for (const p of byLine.get(0) ?? []) {
      const li = document.createElement("li");
      li.append(problem(null, p));
      items.push(li);
    }
    lines.forEach((content, i) => {
      const mine = byLine.get(i + 1);
      if (!mine) return;
      const li = document.createElement("li");
      li.className = "line";
      li.dataset.line = String(i + 1);
      const code = document.createElement("code");
      code.textContent = `${i + 1} | ${content}`;
      li.append(code, ...mine.map((p) => problem(i + 1, p)));
      items.push(li);
    });
    list.replaceChildren(...items);
    list.hidden = false;
  }
}

function problem(line, p) {
  const el = document.createElement("p");
  el.className = "field-error";
  el.dataset.line = line === null ? "" : String(line);
  el.textContent = `${line === null ? "" : `line ${line}: `}${p.field}: ${p.message}`;
  return el;
}
