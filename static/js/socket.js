// The WebSocket to /ws: connects, reconnects with back-off, and reports its state.

const MIN_DELAY_MS = 250;
const MAX_DELAY_MS = 2000; // keeps "connected again within 5 s of the server answering"
const PING_EVERY_MS = 15000;
const SILENCE_LIMIT_MS = 40000; // no message at all (not even a pong): assume the link is dead

/** ws(s)://<this host>/ws (no token in it: the cookie goes along by itself). */
export function socketUrl(loc = location) {
  const url = new URL("/ws", loc.href);
  url.protocol = loc.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}

/**
 * Keep a connection open for as long as the page lives.
 * onMessage(msg) gets every parsed message; onStatus({state, retryInMs?, attempt}) gets
 * "connecting" | "connected" | "disconnected".
 */
export function openSocket({ onMessage, onStatus }) {
  let ws = null;
  let delay = MIN_DELAY_MS;
  let attempt = 0;
  let retryTimer = null;
  let pingTimer = null;
  let lastHeard = 0;

  function connect() {
    retryTimer = null;
    attempt += 1;
    onStatus({ state: "connecting", attempt });
    ws = new WebSocket(socketUrl());
    ws.onopen = () => {
      delay = MIN_DELAY_MS;
      attempt = 0;
      lastHeard = performance.now();
      onStatus({ state: "connected" });
      pingTimer = setInterval(keepAlive, PING_EVERY_MS);
    };
    ws.onmessage = (event) => {
      lastHeard = performance.now();
      let msg;
      try {
        msg = JSON.parse(event.data);
      } catch {
        return;
      }
      onMessage(msg);
    };
    ws.onclose = (event) => {
      clearInterval(pingTimer);
      ws = null;
      scheduleRetry(event.code);
    };
  }

  function keepAlive() {
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    if (performance.now() - lastHeard > SILENCE_LIMIT_MS) {
      ws.close(4000, "silent");
      return;
    }
    ws.send(JSON.stringify({ type: "ping" }));
  }

  function scheduleRetry(code) {
    if (retryTimer !== null) return;
    const wait = Math.round(delay * (0.8 + Math.random() * 0.4));
    delay = Math.min(delay * 2, MAX_DELAY_MS);
    onStatus({ state: "disconnected", retryInMs: wait, code, attempt });
    retryTimer = setTimeout(connect, wait);
  }

  function retryNow() {
    if (ws === null && retryTimer !== null) {
      clearTimeout(retryTimer);
      connect();
    }
  }

  window.addEventListener("online", retryNow);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") retryNow();
  });
  connect();
  return {
    send(msg) {
      if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg));
    },
  };
}
