// How numbers, times and states read on screen.

export function bytes(n) {
  n = Number(n) || 0;
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i === 0 || n >= 100 ? 0 : 1)} ${units[i]}`;
}

export function percent(n) {
  n = Number(n) || 0;
  return `${n.toFixed(n >= 100 ? 0 : 1)}%`;
}

// 93784000 → "1d 2h", 125000 → "2m 5s".
export function duration(ms) {
  let s = Math.max(0, Math.floor(Number(ms) / 1000));
  const d = Math.floor(s / 86400);
  const hours = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  s %= 60;
  if (d) return `${d}d ${hours}h`;
  if (hours) return `${hours}h ${m}m`;
  if (m) return `${m}m ${s}s`;
  return `${s}s`;
}

// int64 fields arrive as strings; 0 means "never".
export function ago(unixMs, now = Date.now()) {
  const t = Number(unixMs);
  if (!t) return 'never';
  const d = now - t;
  return d < 1500 ? 'just now' : `${duration(d)} ago`;
}

export function dateTime(unixMs) {
  const t = Number(unixMs);
  return t ? new Date(t).toLocaleString() : '—';
}

export function time(unixMs) {
  const t = Number(unixMs);
  return t ? new Date(t).toLocaleTimeString() : '—';
}

// "UNIT_STATE_WAITING_RESTART" → "waiting restart".
export function enumName(value, prefix) {
  return String(value || '').replace(prefix, '').toLowerCase().replace(/_/g, ' ') || 'unknown';
}

export const unitState = (state) => enumName(state, 'UNIT_STATE_');

// CSS class for a state badge: ok / warn / bad / idle.
export function stateTone(state) {
  const s = String(state || '');
  if (/ONLINE|SUCCEEDED|DONE/.test(s)) return 'ok';
  if (/ERRORED|FAILED|ABORTED|INTERRUPTED/.test(s)) return 'bad';
  if (/LAUNCHING|STOPPING|WAITING|RUNNING|RESTARTING|PENDING/.test(s)) return 'warn';
  return 'idle';
}

// A Target (fleet.proto) as text.
export function target(t) {
  if (!t) return '—';
  if (t.all) return 'all hosts';
  if (t.selector) return t.selector;
  if (t.hosts) return t.hosts.ids.join(', ');
  return '—';
}

// A module action reply (reply_json) as display text: a JSON string reads as itself.
export function replyText(replyJson) {
  if (!replyJson) return '(no reply)';
  try {
    const v = JSON.parse(replyJson);
    return typeof v === 'string' ? v : JSON.stringify(v, null, 2);
  } catch {
    return replyJson;
  }
}

// A config value (JSON) as the text an operator would type (PM2 values are strings).
export function configText(json) {
  if (json === '' || json === undefined) return '';
  try {
    const v = JSON.parse(json);
    return typeof v === 'string' ? v : JSON.stringify(v);
  } catch {
    return json;
  }
}
