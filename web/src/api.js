// The control plane's JSON API: protobuf's JSON mapping of the Fleet service.
//   unary:     POST /api/v1/<Method>, JSON body → JSON reply
//   streaming: POST /api/v1/<Method> → application/x-ndjson, one {"result": msg} per line,
//              a last {"error": {...}} line if the stream fails.
// Every call carries the session's bearer token; a 401 anywhere ends the session.

const TOKEN_KEY = 'herd.token';

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY) || '';
}

export function setToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function clearToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

// A failed call: HTTP status, gRPC status name ("PERMISSION_DENIED") and the server's message.
export class ApiError extends Error {
  constructor(httpStatus, status, message) {
    super(message || status || `HTTP ${httpStatus}`);
    this.httpStatus = httpStatus;
    this.status = status || '';
  }

  get unauthenticated() {
    return this.httpStatus === 401 || this.status === 'UNAUTHENTICATED';
  }

  // What to show an operator.
  describe() {
    if (this.httpStatus === 403 || this.status === 'PERMISSION_DENIED') return `permission denied: ${this.message} (this token is read-only)`;
    if (this.httpStatus === 0) return `control plane unreachable: ${this.message}`;
    return this.status ? `${this.status.toLowerCase().replace(/_/g, ' ')}: ${this.message}` : this.message;
  }
}

let unauthorizedHandler = () => {};

// Called (once per failing call) when the server rejects the token.
export function onUnauthorized(handler) {
  unauthorizedHandler = handler;
}

async function post(method, body, signal) {
  let response;
  try {
    response = await fetch(`/api/v1/${method}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${getToken()}` },
      body: JSON.stringify(body || {}),
      signal,
    });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'UNAVAILABLE', e.message);
  }
  if (!response.ok) {
    let detail = {};
    try {
      detail = (await response.json()).error || {};
    } catch {
      // Not our JSON (a proxy's error page): the HTTP status says enough.
    }
    throw failure(response.status, detail.status, detail.message || response.statusText);
  }
  return response;
}

// The error to throw; a rejected token also ends the session.
function failure(httpStatus, status, message) {
  const error = new ApiError(httpStatus, status, message);
  if (error.unauthenticated) unauthorizedHandler(error);
  return error;
}

// One unary call; resolves to the reply message.
export async function call(method, body, { signal } = {}) {
  const response = await post(method, body, signal);
  return response.json();
}

// Reads one stream to its end, calling onMessage for each message. Resolves when the server
// ends the stream, rejects with ApiError if it fails, or with AbortError when signal aborts.
export async function readStream(method, body, onMessage, signal) {
  const response = await post(method, body, signal);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffered = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffered += decoder.decode(value, { stream: true });
      const lines = buffered.split('\n');
      buffered = lines.pop();
      for (const line of lines) {
        if (!line.trim()) continue;
        const frame = JSON.parse(line);
        // A stream refused or failed after its 200 says why in its last line.
        if (frame.error) throw failure(response.status, frame.error.status, frame.error.message);
        onMessage(frame.result);
      }
    }
  } finally {
    // Whatever ended the reading, let the connection go (a no-op once the body is done).
    reader.cancel().catch(() => {});
  }
}

// Stream failures that reopening cannot cure.
const FINAL = ['UNAUTHENTICATED', 'PERMISSION_DENIED', 'NOT_FOUND', 'INVALID_ARGUMENT'];
const HTTP_STATUS = { 400: 'INVALID_ARGUMENT', 401: 'UNAUTHENTICATED', 403: 'PERMISSION_DENIED', 404: 'NOT_FOUND' };

// Keeps a stream open until signal aborts: reopened after a short, growing delay whenever it
// ends or fails (the control plane restarted), unless isFinished() says it ended for good.
// onStatus(text) reports connection trouble ('' once messages flow again).
export async function watch(method, body, { onMessage, onStatus = () => {}, isFinished = () => false, signal }) {
  let delayMs = 500;
  while (!signal.aborted) {
    try {
      await readStream(method, body, (message) => {
        delayMs = 500;
        onStatus('');
        onMessage(message);
      }, signal);
      if (isFinished()) return;
      onStatus('stream ended, reconnecting…');
    } catch (e) {
      if (signal.aborted) return;
      if (e instanceof ApiError && FINAL.includes(e.status || HTTP_STATUS[e.httpStatus])) {
        onStatus(e.describe());
        return;
      }
      onStatus(`${e instanceof ApiError ? e.describe() : e.message}; reconnecting…`);
    }
    await sleep(delayMs, signal);
    delayMs = Math.min(delayMs * 2, 8000);
  }
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}

// Target helpers (fleet.proto's Target oneof).
export const targetHost = (hostId) => ({ hosts: { ids: [hostId] } });
export const targetSelector = (selector) => ({ selector });
export const targetAll = () => ({ all: true });
