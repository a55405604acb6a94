// Recent rollouts (ListRollouts), refreshed every few seconds; a row opens to show its hosts.

import { call, ApiError } from './api.js';
import { h, setText } from './dom.js';
import * as fmt from './format.js';
import { rolloutHostRows } from './rollout-dialog.js';

const REFRESH_MS = 3000;
const LIMIT = 50;

export function rolloutsView(root, { scope }) {
  const rows = h('tbody');
  const error = h('div', { class: 'status-line bad', hidden: true });
  const expanded = new Set(); // rollout ids whose hosts are shown

  root.replaceChildren(h('section', { class: 'page' },
    h('div', { class: 'page-head' }, h('h2', {}, 'Rollouts'), h('span', { class: 'muted' }, `the ${LIMIT} most recent`)),
    error,
    h('div', { class: 'card table-card' },
      h('table', { class: 'table' },
        h('thead', {}, h('tr', {}, ['rollout', 'module', 'target', 'state', 'progress', 'batch size', 'created', 'by'].map((t) => h('th', {}, t)))),
        rows))));

  let inFlight = false;
  async function refresh() {
    if (inFlight) return;
    inFlight = true;
    try {
      const list = await call('ListRollouts', { limit: LIMIT }, { signal: scope.signal });
      error.hidden = true;
      render(list.rollouts || []);
    } catch (e) {
      if (e.name === 'AbortError') return;
      error.hidden = false;
      setText(error, `Could not list rollouts: ${e instanceof ApiError ? e.describe() : e.message}`);
    } finally {
      inFlight = false;
    }
  }

  function render(rollouts) {
    rows.replaceChildren(...rollouts.flatMap((r) => {
      const hosts = r.hosts || [];
      const done = hosts.filter((x) => x.state === 'ROLLOUT_HOST_STATE_DONE').length;
      const toggle = () => {
        if (expanded.has(r.id)) expanded.delete(r.id);
        else expanded.add(r.id);
        render(rollouts);
      };
      const row = h('tr', { class: 'clickable', testid: 'rollout-row', dataset: { rolloutId: r.id, state: r.state }, onclick: toggle },
        h('td', { class: 'mono small' }, r.id),
        h('td', {}, r.module),
        h('td', {}, fmt.target(r.target)),
        h('td', { title: r.reason || '' }, h('span', { class: `badge ${fmt.stateTone(r.state)}` }, fmt.enumName(r.state, 'ROLLOUT_STATE_').toUpperCase())),
        h('td', {}, `${done}/${hosts.length} hosts`),
        h('td', { class: 'num' }, r.batchSize),
        h('td', { class: 'small' }, fmt.dateTime(r.createdAtUnixMs)),
        h('td', { class: 'small' }, r.createdBy));
      if (!expanded.has(r.id)) return [row];
      return [row, h('tr', { class: 'detail-row' }, h('td', { colspan: 8 },
        r.reason && h('div', { class: 'status-line bad' }, r.reason),
        h('table', { class: 'table inner' },
          h('thead', {}, h('tr', {}, ['host', 'batch', 'state', 'error'].map((t) => h('th', {}, t)))),
          h('tbody', {}, rolloutHostRows(hosts)))))];
    }));
    if (!rollouts.length) rows.append(h('tr', {}, h('td', { colspan: 8, class: 'empty' }, 'No rollout yet: restart a module from its host\'s page.')));
  }

  refresh();
  scope.every(REFRESH_MS, refresh);
}
