// REST calls to the server: one place that knows the token and the error shape.

// Opening the page as /?token=... makes the server set an HttpOnly cookie that carries the
// token from then on; the page keeps it only in memory and takes it out of its URL, so it
// never shows up in a later request's URL, the history or a bookmark.
const token = takeTokenFromUrl();

function takeTokenFromUrl() {
  const url = new URL(location.href);
  const given = url.searchParams.get("token");
  if (given === null) return null;
  url.searchParams.delete("token");
  history.replaceState(history.state, "", url.pathname + url.search + url.hash);
  return given;
}

/** The token the page was opened with (?token=...), or null. */
export function pageToken() {
  return token;
}

/**
 * Send a request; resolves to {ok, status, data}. Never throws for HTTP errors, so callers
 * can show the server's message where it belongs.
 */
export async function request(method, path, body) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token && method !== "GET") headers["Authorization"] = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    return { ok: false, status: 0, data: { message: `network error: ${err.message}` } };
  }
  let data = null;
  const text = await response.text();
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { message: text };
  }
  return { ok: response.ok, status: response.status, data };
}

/**
 * The field errors in a 422 body as [{field, message}]; tolerant of pydantic's own
 * {loc, msg} shape in case a request never reached the app's own validation.
 */
export function fieldErrors(data) {
  const detail = data && Array.isArray(data.detail) ? data.detail : [];
  return detail.map((d) => ({
    field: d.field ?? (Array.isArray(d.loc) ? String(d.loc[d.loc.length - 1]) : null),
    message: d.message ?? d.msg ?? String(d),
  }));
}

/** The message a failed response carries, for places that are not a field. */
export function errorMessage(result) {
  const data = result.data;
  if (data && typeof data.message === "string") return data.message;
  if (data && typeof data.detail === "string") return data.detail;
  return `HTTP ${result.status}`;
}

// Export formats as hello lists them (Perfetto's native trace first), and the size above
// which the page says how big an export will be.
let exportFormats = [];
let largeExportBytes = Infinity;

/** Take the export formats from hello. */
export function useExportFormats(hello) {
  exportFormats = hello.exports ?? [];
  largeExportBytes = hello.large_export_bytes ?? Infinity;
}

/** The formats as [format, label] pairs, in the order the server prefers. */
export function exportChoices() {
  return exportFormats.map((f) => [f.format, f.label]);
}

function formatBytes(bytes) {
  const units = [["GB", 1e9], ["MB", 1e6]];
  for (const [unit, size] of units) {
    if (bytes >= size) return `${(bytes / size).toFixed(bytes >= 10 * size ? 0 : 1)} ${unit}`;
  }
  return `${Math.round(bytes / 1e3)} kB`;
}

/** "1.3 GB" when an export of `records` records in `format` (records times the
 * format's bytes per record) is above the large size, else null. */
export function largeExportSize(format, records) {
  const f = exportFormats.find((x) => x.format === format);
  if (!f || typeof records !== "number") return null;
  const lean = typeof f.lean_above_records === "number" && records > f.lean_above_records;
  const bytes = records * (lean ? f.lean_bytes_per_record : f.bytes_per_record);
  return bytes > largeExportBytes ? formatBytes(bytes) : null;
}

/** A format's label, as hello gives it. */
export function exportLabel(format) {
  return exportFormats.find((x) => x.format === format)?.label ?? format;
}

/** The download URL of the current run's log (run null) or an earlier run's. */
export function exportUrl(format, runId = null) {
  const base = runId === null ? "/api/export" : `/api/runs/${encodeURIComponent(runId)}/export`;
  const params = new URLSearchParams({ format });
  return `${base}?${params}`;
}
