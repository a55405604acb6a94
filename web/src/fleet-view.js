// The fleet: one page of hosts at a time (search and paging happen on the server, so a
// fleet of thousands costs one page per refresh), refreshed every few seconds.

import { call, ApiError } from './api.js';
import { h, setText, labelChips } from './dom.js';
import * as fmt from './format.js';

const PAGE_SIZE = 50;
const REFRESH_MS = 3000;
const SEARCH_DEBOUNCE_MS = 300;

// Kept across views: coming back from a host finds the same search and page.
const state = { query: '', pageTokens: [''], page: 0 };

export function fleetView(root, { scope, navigate }) {
  const search = h('input', { class: 'input search', type: 'search', testid: 'host-search', placeholder: 'Search hosts by name, id or label (env=prod)', value: state.query, spellcheck: false });
  const count = h('span', { class: 'host-count', testid: 'host-count' });
  const error = h('div', { class: 'status-line bad', hidden: true });
  const rows = h('tbody');
  const range = h('span', { class: 'muted', testid: 'page-range' });
  const prev = h('button', { class: 'btn btn-small', testid: 'page-prev' }, '‹ Previous');
  const next = h('button', { class: 'btn btn-small', testid: 'page-next' }, 'Next ›');

  root.replaceChildren(h('section', { class: 'page' },
    h('div', { class: 'page-head' }, h('h2', {}, 'Hosts'), count),
    h('div', { class: 'toolbar' }, search, h('div', { class: 'pager' }, range, prev, next)),
    error,
    h('div', { class: 'card table-card' },
      h('table', { class: 'table hosts-table' },
        h('thead', {}, h('tr', {},
          h('th', {}, 'host'), h('th', {}, 'labels'), h('th', {}, 'status'), h('th', {}, 'agent'),
          h('th', {}, 'modules'), h('th', { class: 'num' }, 'issues'), h('th', {}, 'CPU'), h('th', {}, 'memory'), h('th', {}, 'last seen'))),
        rows))));

  // A refresh answers for one query and page; an answer for another one (the operator moved
  // on meanwhile) is dropped. Periodic refreshes wait for the one in flight.
  const pageKey = () => JSON.stringify([state.query, state.page, state.pageTokens[state.page]]);
  let inFlight = 0;
  let nextToken = '';
  async function refresh({ periodic = false } = {}) {
    if (periodic && inFlight) return;
    const key = pageKey();
    inFlight++;
    try {
      const list = await call('ListHosts', { query: state.query, pageSize: PAGE_SIZE, pageToken: state.pageTokens[state.page] }, { signal: scope.signal });
      if (key !== pageKey()) return;
      if (!list.hosts.length && state.page > 0) {
        // The fleet shrank under this page: start over.
        resetPaging();
        refresh();
        return;
      }
      error.hidden = true;
      nextToken = list.nextPageToken;
      render(list);
    } catch (e) {
      if (e.name === 'AbortError' || key !== pageKey()) return;
      error.hidden = false;
      setText(error, `Could not list hosts: ${e instanceof ApiError ? e.describe() : e.message}`);
    } finally {
      inFlight--;
    }
  }

  function render(list) {
    const total = list.totalSize;
    setText(count, state.query
      ? `${total} matching · ${list.onlineSize} online`
      : `${total} hosts · ${list.onlineSize} online`);
    const first = state.page * PAGE_SIZE;
    setText(range, total ? `${first + 1}–${first + list.hosts.length} of ${total}` : 'no hosts');
    prev.disabled = state.page === 0;
    next.disabled = !nextToken;
    const now = Date.now();
    rows.replaceChildren(...list.hosts.map((host) => hostRow(host, now)));
    if (!list.hosts.length) {
      rows.append(h('tr', {}, h('td', { colspan: 9, class: 'empty' }, state.query ? `No host matches "${state.query}".` : 'No host has registered yet.')));
    }
  }

  function hostRow(host, now) {
    const usage = host.usage || {};
    const memTotal = Number(usage.memoryTotalBytes);
    const memUsed = memTotal - Number(usage.memoryAvailableBytes);
    const open = () => navigate(`#/hosts/${encodeURIComponent(host.hostId)}`);
    return h('tr', { class: 'clickable', testid: 'host-row', dataset: { hostId: host.hostId }, onclick: open },
      h('td', {},
        h('a', { class: 'host-link', href: `#/hosts/${encodeURIComponent(host.hostId)}` }, host.hostname || host.hostId),
        h('div', { class: 'muted mono small' }, host.hostId)),
      h('td', { class: 'chips' }, labelChips(host.labels)),
      h('td', {}, h('span', { class: `badge ${host.online ? 'ok' : 'idle'}` }, host.online ? 'online' : 'offline')),
      h('td', { class: 'small' }, host.agentVersion),
      h('td', { class: 'chips', testid: 'host-modules' }, moduleChips(host.moduleNames || [])),
      h('td', { class: 'num', testid: 'host-issues' }, issuesBadge(Number(usage.issues || 0))),
      h('td', {}, host.online ? meter(usage.cpuPercent / 100, fmt.percent(usage.cpuPercent)) : '—'),
      h('td', {}, host.online && memTotal ? meter(memUsed / memTotal, `${fmt.bytes(memUsed)} / ${fmt.bytes(memTotal)}`) : '—'),
      h('td', { class: 'small', title: fmt.dateTime(host.lastSeenUnixMs) }, fmt.ago(host.lastSeenUnixMs, now)));
  }

  function resetPaging() {
    state.pageTokens = [''];
    state.page = 0;
  }

  let debounce;
  search.addEventListener('input', () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => {
      state.query = search.value.trim();
      resetPaging();
      refresh();
    }, SEARCH_DEBOUNCE_MS);
  });
  scope.onDispose(() => clearTimeout(debounce));
  next.addEventListener('click', () => {
    if (!nextToken) return;
    state.pageTokens[state.page + 1] = nextToken;
    state.page++;
    nextToken = ''; // until this page's answer says whether there is another
    next.disabled = true;
    refresh();
  });
  prev.addEventListener('click', () => {
    if (state.page === 0) return;
    state.page--;
    refresh();
  });

  refresh();
  scope.every(REFRESH_MS, () => refresh({ periodic: true }));
}

// The first few module names as chips, then "+N" (the row opens the host; the Modules page
// has each module across hosts).
const SHOWN_MODULES = 4;
function moduleChips(names) {
  const sorted = [...names].sort();
  const chips = sorted.slice(0, SHOWN_MODULES).map((n) => h('span', { class: 'chip module-chip' }, n));
  if (sorted.length > SHOWN_MODULES) chips.push(h('span', { class: 'muted small', title: sorted.slice(SHOWN_MODULES).join(', ') }, `+${sorted.length - SHOWN_MODULES}`));
  if (!sorted.length) chips.push(h('span', { class: 'muted' }, '—'));
  return chips;
}

function issuesBadge(n) {
  return n > 0 ? h('span', { class: 'badge warn' }, String(n)) : h('span', { class: 'muted' }, '0');
}

// A thin bar with its text: fraction 0..1.
function meter(fraction, text) {
  const bar = h('span', { class: 'meter-fill' });
  const f = Math.max(0, Math.min(1, Number(fraction) || 0));
  bar.style.width = `${(f * 100).toFixed(1)}%`;
  bar.classList.toggle('hot', f > 0.85);
  return h('div', { class: 'meter-cell' }, h('span', { class: 'meter' }, bar), h('span', { class: 'small' }, text));
}
