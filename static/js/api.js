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

/** The download URL of the current run's log (run null) or an earlier run's. */
export function exportUrl(format, runId = null) {
  const base = runId === null ? "/api/export" : `/api/runs/${encodeURIComponent(runId)}/export`;
  const params = new URLSearchParams({ format });
  return `${base}?${params}`;
}
