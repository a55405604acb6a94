// A unit's live log on its host (StreamLogs, relayed through the host's stream), with follow
// (keep the newest line in view), pause (lines keep arriving and are counted, not shown,
// until resumed) and a filter (only lines containing the text; the others stay, hidden).
//   #/logs                      pick a host and a unit
//   #/logs/<host>/<unit>        that unit's log

import { call, watch, ApiError } from './api.js';
import { h, setText } from './dom.js';

const MAX_LINES = 5000;  // kept in the page; older ones go
const BACKLOG = 200;     // lines asked for when opening

export function logsView(root, { scope, hostId = '', unit = '', navigate }) {
  const hostInput = h('input', { class: 'input', testid: 'logs-host', placeholder: 'host id or hostname', value: hostId, spellcheck: false });
  const unitInput = h('input', { class: 'input', testid: 'logs-unit', placeholder: 'unit or module', value: unit, spellcheck: false });
  const unitList = h('datalist', { id: 'logs-units' });
  unitInput.setAttribute('list', 'logs-units');
  const open = h('button', { class: 'btn btn-primary', testid: 'logs-open' }, 'Open');
  const filter = h('input', { class: 'input search', type: 'search', testid: 'logs-filter', placeholder: 'Filter lines', spellcheck: false });
  const follow = h('input', { type: 'checkbox', testid: 'logs-follow', checked: true });
  const pause = h('button', { class: 'btn btn-small', testid: 'logs-pause' }, 'Pause');
  const clear = h('button', { class: 'btn btn-small', testid: 'logs-clear' }, 'Clear');
  const status = h('span', { class: 'muted', testid: 'logs-status' });
  const pending = h('span', { class: 'badge warn', testid: 'logs-pending', hidden: true });
  const lines = h('div', { class: 'log-lines mono small', testid: 'logs-lines' });

  root.replaceChildren(h('section', { class: 'page' },
    h('div', { class: 'page-head' }, h('h2', {}, 'Logs'), status),
    h('div', { class: 'toolbar' }, hostInput, unitInput, unitList, open),
    h('div', { class: 'toolbar' }, filter, h('label', { class: 'small' }, follow, ' follow'), pause, pending, clear),
    h('div', { class: 'card log-card' }, lines)));

  open.addEventListener('click', () => {
    const host = hostInput.value.trim();
    const u = unitInput.value.trim();
    if (host && u) navigate(`#/logs/${encodeURIComponent(host)}/${encodeURIComponent(u)}`);
  });
  for (const input of [hostInput, unitInput]) {
    input.addEventListener('keydown', (e) => { if (e.key === 'Enter') open.click(); });
  }
  // The host's units, to pick from.
  hostInput.addEventListener('change', () => suggestUnits(hostInput.value.trim()));
  async function suggestUnits(host) {
    if (!host) return;
    try {
      const d = await call('GetHost', { hostId: host }, { signal: scope.signal });
      unitList.replaceChildren(...(d.units || []).map((u) => h('option', { value: u.name })));
    } catch {
      // An unknown host: the stream says so once opened.
    }
  }
  suggestUnits(hostId);

  let paused = false;
  let held = [];
  const matches = (text) => !filter.value || text.includes(filter.value);
  function show(line) {
    const el = h('div', { class: `log-line ${line.stream === 'err' ? 'err' : ''}`, testid: 'log-line' }, line.text);
    el.hidden = !matches(line.text);
    lines.append(el);
    while (lines.childElementCount > MAX_LINES) lines.firstElementChild.remove();
  }
  function add(line) {
    if (paused) {
      held.push(line);
      if (held.length > MAX_LINES) held.shift();
      pending.hidden = false;
      setText(pending, `${held.length} new`);
      return;
    }
    show(line);
    if (follow.checked) lines.scrollTop = lines.scrollHeight;
  }
  pause.addEventListener('click', () => {
    paused = !paused;
    setText(pause, paused ? 'Resume' : 'Pause');
    pause.dataset.paused = paused ? 'true' : 'false';
    if (!paused) {
      for (const l of held) show(l);
      held = [];
      pending.hidden = true;
      if (follow.checked) lines.scrollTop = lines.scrollHeight;
    }
  });
  clear.addEventListener('click', () => lines.replaceChildren());
  filter.addEventListener('input', () => {
    for (const el of lines.children) el.hidden = !matches(el.textContent);
  });

  if (!hostId || !unit) {
    setText(status, 'choose a host and a unit');
    return;
  }
  document.title = `${unit} on ${hostId} · Logs · Herd`;
  setText(status, 'connecting…');
  watch('StreamLogs', { hostId, unit, lines: BACKLOG, follow: true }, {
    signal: scope.signal,
    onMessage: (line) => {
      setText(status, `${unit} on ${hostId}: live`);
      add(line);
    },
    onStatus: (text) => {
      if (text) setText(status, text);
    },
  }).catch((e) => {
    if (e.name !== 'AbortError') setText(status, e instanceof ApiError ? e.describe() : e.message);
  });
}
