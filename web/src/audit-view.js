// The audit log (ListAudit, the most recent first), filterable by actor and by action; the
// filters apply to what was read (the API has no server-side filter) and are kept in the
// hash, so a filtered view can be linked: #/audit?actor=admin&action=module.deploy

import { call, ApiError } from './api.js';
import { h, setText } from './dom.js';
import * as fmt from './format.js';

const LIMIT = 1000;
const REFRESH_MS = 5000;

export function auditView(root, { scope, query = {} }) {
  const actor = h('select', { class: 'input', testid: 'audit-actor' }, h('option', { value: '' }, 'every actor'));
  const action = h('input', { class: 'input', testid: 'audit-action', placeholder: 'action (e.g. module.deploy, rollout.)', value: query.action || '', spellcheck: false });
  const count = h('span', { class: 'muted', testid: 'audit-count' });
  const error = h('div', { class: 'status-line bad', hidden: true });
  const rows = h('tbody');
  let wantedActor = query.actor || '';

  root.replaceChildren(h('section', { class: 'page' },
    h('div', { class: 'page-head' }, h('h2', {}, 'Audit'), count),
    h('div', { class: 'toolbar' }, actor, action),
    error,
    h('div', { class: 'card table-card' },
      h('table', { class: 'table' },
        h('thead', {}, h('tr', {}, ['time', 'actor', 'action', 'detail'].map((t) => h('th', {}, t)))),
        rows))));

  let entries = [];
  let inFlight = false;
  async function refresh() {
    if (inFlight) return;
    inFlight = true;
    try {
      const r = await call('ListAudit', { limit: LIMIT }, { signal: scope.signal });
      error.hidden = true;
      entries = r.entries || [];
      render();
    } catch (e) {
      if (e.name === 'AbortError') return;
      error.hidden = false;
      setText(error, `Could not read the audit log: ${e instanceof ApiError ? e.describe() : e.message}`);
    } finally {
      inFlight = false;
    }
  }

  function render() {
    // The actors seen, to choose from (the chosen one stays even if it scrolled out).
    const actors = [...new Set(entries.map((e) => e.actor).concat(wantedActor ? [wantedActor] : []))].sort();
    const have = [...actor.options].slice(1).map((o) => o.value);
    if (JSON.stringify(have) !== JSON.stringify(actors)) {
      actor.replaceChildren(h('option', { value: '' }, 'every actor'), ...actors.map((a) => h('option', { value: a }, a)));
    }
    actor.value = wantedActor;
    const want = action.value.trim();
    const shown = entries.filter((e) => (!wantedActor || e.actor === wantedActor) && (!want || e.action.includes(want)));
    setText(count, shown.length === entries.length ? `${entries.length} entries` : `${shown.length} of ${entries.length} entries`);
    rows.replaceChildren(...shown.map((e) => h('tr', { testid: 'audit-row', dataset: { actor: e.actor, action: e.action } },
      h('td', { class: 'small', title: fmt.dateTime(e.atUnixMs) }, fmt.dateTime(e.atUnixMs)),
      h('td', {}, e.actor),
      h('td', {}, h('span', { class: 'chip' }, e.action)),
      h('td', { class: 'mono small detail-json' }, e.detailJson))));
    if (!shown.length) rows.append(h('tr', {}, h('td', { colspan: 4, class: 'empty' }, entries.length ? 'No entry matches the filters.' : 'Nothing audited yet.')));
  }

  function syncHash() {
    const params = new URLSearchParams();
    if (wantedActor) params.set('actor', wantedActor);
    if (action.value.trim()) params.set('action', action.value.trim());
    const hash = `#/audit${params.toString() ? `?${params}` : ''}`;
    if (location.hash !== hash) history.replaceState(null, '', hash);
  }
  actor.addEventListener('change', () => { wantedActor = actor.value; syncHash(); render(); });
  action.addEventListener('input', () => { syncHash(); render(); });

  refresh();
  scope.every(REFRESH_MS, refresh);
}
