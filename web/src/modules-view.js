// Every module across the fleet (ListModules + ListDeployments, refreshed every few seconds):
// the versions running and on how many hosts, issue counts, and for each declaration
// (deployment) what is wanted against what runs, with the hosts that have not converged and
// why. An operator deploys, upgrades (a rollout) and undeploys from here.
//   #/modules            all
//   #/modules/<name>     one module's row opened

import { call, ApiError } from './api.js';
import { h, setText } from './dom.js';
import * as fmt from './format.js';
import { openDialog } from './dialog.js';

const REFRESH_MS = 3000;

export function modulesView(root, { scope, module: opened, navigate }) {
  const rows = h('tbody');
  const error = h('div', { class: 'status-line bad', hidden: true });
  const count = h('span', { class: 'muted', testid: 'module-count' });
  const deployButton = h('button', { class: 'btn btn-primary', testid: 'deploy-open', onclick: () => openDeployDialog({ scope, onDone: refresh }) }, 'Deploy a module…');
  const expanded = new Set(opened ? [opened] : []);

  root.replaceChildren(h('section', { class: 'page' },
    h('div', { class: 'page-head' }, h('h2', {}, 'Modules'), count, deployButton),
    error,
    h('div', { class: 'card table-card' },
      h('table', { class: 'table modules-table' },
        h('thead', {}, h('tr', {}, ['module', 'versions running', 'hosts', 'issues', 'wanted (deployments)', 'converged'].map((t) => h('th', {}, t)))),
        rows))));

  let inFlight = false;
  let last = null;
  async function refresh() {
    if (inFlight) return;
    inFlight = true;
    try {
      const [mods, deps] = await Promise.all([
        call('ListModules', {}, { signal: scope.signal }),
        call('ListDeployments', {}, { signal: scope.signal }),
      ]);
      error.hidden = true;
      last = merge(mods.modules || [], deps.deployments || []);
      render(last);
    } catch (e) {
      if (e.name === 'AbortError') return;
      error.hidden = false;
      setText(error, `Could not list modules: ${e instanceof ApiError ? e.describe() : e.message}`);
    } finally {
      inFlight = false;
    }
  }

  function render(modules) {
    setText(count, `${modules.length} module${modules.length === 1 ? '' : 's'}`);
    rows.replaceChildren(...modules.flatMap((m) => {
      const toggle = () => {
        if (expanded.has(m.name)) expanded.delete(m.name);
        else expanded.add(m.name);
        render(last);
      };
      const row = h('tr', { class: 'clickable', testid: 'module-row', dataset: { module: m.name }, onclick: toggle },
        h('td', {}, h('strong', {}, m.name)),
        h('td', { class: 'chips' }, [...m.versions.entries()].sort().map(([v, n]) => h('span', { class: 'chip', testid: 'module-version' }, `${v || '?'} × ${n}`))),
        h('td', { class: 'num', testid: 'module-hosts' }, `${m.online}/${m.hosts.length}`),
        h('td', { class: 'num', testid: 'module-issues' }, m.issues > 0 ? h('span', { class: 'badge warn' }, String(m.issues)) : '0'),
        h('td', { testid: 'module-wanted' }, m.deployments.length
          ? m.deployments.map((d) => h('div', { class: 'small' }, `${scopeText(d.scope)}: ${d.version || 'any version'}`))
          : h('span', { class: 'muted' }, 'installed by hand')),
        h('td', { testid: 'module-converged' }, m.deployments.map((d) => convergedBadge(d))));
      if (!expanded.has(m.name)) return [row];
      return [row, h('tr', { class: 'detail-row', testid: 'module-detail', dataset: { module: m.name } }, h('td', { colspan: 6 }, detail(m)))];
    }));
    if (!modules.length) rows.append(h('tr', {}, h('td', { colspan: 6, class: 'empty' }, 'No module runs anywhere yet: deploy one.')));
  }

  function detail(m) {
    const parts = [];
    for (const d of m.deployments) {
      const drift = (d.hosts || []).filter((x) => x.state !== 'converged');
      parts.push(h('div', { class: 'deployment', testid: 'deployment', dataset: { scope: scopeText(d.scope) } },
        h('div', { class: 'form-row' },
          h('strong', {}, `${scopeText(d.scope)} wants ${d.version || 'any version'}`),
          h('span', { class: 'muted small mono' }, d.source),
          h('span', { class: 'muted small' }, `by ${d.updatedBy} ${fmt.ago(d.updatedAtUnixMs)}`),
          h('button', { class: 'btn btn-small', testid: 'deploy-upgrade', onclick: () => openDeployDialog({ scope, onDone: refresh, preset: { name: m.name, scope: d.scope, source: d.source } }) }, 'Upgrade…'),
          h('button', { class: 'btn btn-small btn-danger', testid: 'undeploy', onclick: () => undeploy(m.name, d.scope) }, 'Undeploy')),
        drift.length
          ? h('table', { class: 'table inner' },
            h('thead', {}, h('tr', {}, ['host', 'online', 'installed', 'state', 'error'].map((t) => h('th', {}, t)))),
            h('tbody', {}, drift.map((x) => h('tr', { testid: 'drift-row', dataset: { hostId: x.hostId } },
              h('td', {}, h('a', { href: `#/hosts/${encodeURIComponent(x.hostId)}` }, x.hostname || x.hostId)),
              h('td', {}, x.online ? 'yes' : 'no'),
              h('td', {}, x.actualVersion || '—'),
              h('td', {}, h('span', { class: `badge ${x.state === 'failed' ? 'bad' : 'idle'}` }, x.state || (x.online ? 'told' : 'offline'))),
              h('td', { class: 'small' }, x.error || '')))))
          : h('div', { class: 'muted small' }, 'every host converged')));
    }
    const running = m.hosts.map((x) => h('tr', {},
      h('td', {}, h('a', { href: `#/hosts/${encodeURIComponent(x.hostId)}` }, x.hostname || x.hostId)),
      h('td', {}, x.version || '—'),
      h('td', {}, h('span', { class: `badge ${fmt.stateTone(x.state)}` }, fmt.enumName(x.state, 'UNIT_STATE_'))),
      h('td', { class: 'num' }, x.issues)));
    if (running.length) {
      parts.push(h('table', { class: 'table inner', testid: 'module-hosts-table' },
        h('thead', {}, h('tr', {}, ['host', 'version', 'state', 'issues'].map((t) => h('th', {}, t)))),
        h('tbody', {}, running)));
    }
    return parts;
  }

  async function undeploy(name, depScope) {
    if (!confirm(`Undeploy ${name} at ${scopeText(depScope)}? Hosts no longer wanting it uninstall it.`)) return;
    try {
      await call('Undeploy', { name, scope: depScope });
      refresh();
    } catch (e) {
      error.hidden = false;
      setText(error, `Could not undeploy ${name}: ${e instanceof ApiError ? e.describe() : e.message}`);
    }
  }

  refresh();
  scope.every(REFRESH_MS, refresh);
  void navigate;
}

// One entry per module name: its instances and its declarations.
function merge(instances, deployments) {
  const byName = new Map();
  const get = (name) => {
    if (!byName.has(name)) byName.set(name, { name, versions: new Map(), hosts: [], online: 0, issues: 0, deployments: [] });
    return byName.get(name);
  };
  for (const i of instances) {
    const unit = i.unit || {};
    const m = get(unit.name);
    m.versions.set(unit.version || '', (m.versions.get(unit.version || '') || 0) + 1);
    const issues = Number(unit.issuesCount || 0);
    m.issues += issues;
    if (i.online) m.online++;
    m.hosts.push({ hostId: i.hostId, hostname: i.hostname, version: unit.version, state: unit.state, issues });
  }
  for (const d of deployments) get(d.name).deployments.push(d);
  return [...byName.values()].sort((a, b) => a.name.localeCompare(b.name));
}

function convergedBadge(d) {
  const hosts = d.hosts || [];
  const ok = hosts.filter((x) => x.state === 'converged').length;
  const failed = hosts.filter((x) => x.state === 'failed').length;
  const tone = failed ? 'bad' : ok === hosts.length ? 'ok' : 'idle';
  return h('div', {}, h('span', { class: `badge ${tone}` }, `${ok}/${hosts.length}${failed ? ` · ${failed} failing` : ''}`));
}

export function scopeText(s) {
  if (!s) return 'global';
  if (s.selector) return `selector ${s.selector}`;
  if (s.hostId) return `host ${s.hostId}`;
  return 'global';
}

// Deploy or upgrade: an npm spec, an uploaded artifact (sha256:...) or a path on the hosts,
// at a scope; a version change of a declaration in force runs as a rollout (Rollouts page).
function openDeployDialog({ scope, onDone, preset = {} }) {
  const { body, dialog, scope: dialogScope } = openDialog({ title: preset.name ? `Upgrade ${preset.name}` : 'Deploy a module', testid: 'deploy-dialog', closeTestid: 'deploy-close', scope });
  const source = h('input', { class: 'input', testid: 'deploy-source', placeholder: 'pm2-server-monit@3.0.0, sha256:…, or /path/on/hosts.tgz', value: preset.source || '', spellcheck: false });
  const name = h('input', { class: 'input', testid: 'deploy-name', placeholder: 'from the npm spec', value: preset.name || '', spellcheck: false });
  const version = h('input', { class: 'input input-narrow', testid: 'deploy-version', placeholder: 'from the spec' });
  const kind = h('select', { class: 'input', testid: 'deploy-scope' },
    h('option', { value: 'global' }, 'every host'),
    h('option', { value: 'selector' }, 'hosts matching'),
    h('option', { value: 'host' }, 'one host'));
  const scopeValue = h('input', { class: 'input', testid: 'deploy-scope-value', placeholder: 'role=db', spellcheck: false });
  const batch = h('input', { class: 'input input-narrow', testid: 'deploy-batch', value: '1', title: 'rollout: hosts per batch' });
  const status = h('div', { class: 'status-line', testid: 'deploy-status' });
  if (preset.scope) {
    if (preset.scope.selector) { kind.value = 'selector'; scopeValue.value = preset.scope.selector; }
    else if (preset.scope.hostId) { kind.value = 'host'; scopeValue.value = preset.scope.hostId; }
  }
  const syncScope = () => { scopeValue.hidden = kind.value === 'global'; scopeValue.placeholder = kind.value === 'host' ? 'host id or hostname' : 'role=db'; };
  kind.addEventListener('change', syncScope);
  syncScope();
  const submit = h('button', { class: 'btn btn-primary', testid: 'deploy-submit', onclick: go }, preset.name ? 'Upgrade' : 'Deploy');
  body.append(h('fieldset', { class: 'rollout-form' },
    h('div', { class: 'form-row' }, h('label', {}, 'Source ', source)),
    h('div', { class: 'form-row' }, h('label', {}, 'Name ', name), h('label', {}, 'version ', version)),
    h('div', { class: 'form-row' }, h('label', {}, 'On ', kind), scopeValue),
    h('div', { class: 'form-row' }, h('label', {}, 'rollout batch ', batch), submit)),
  status);

  async function go() {
    const req = { source: source.value.trim(), name: name.value.trim(), version: version.value.trim(), scope: {} };
    if (kind.value === 'global') req.scope.global = true;
    else if (kind.value === 'selector') req.scope.selector = scopeValue.value.trim();
    else req.scope.hostId = scopeValue.value.trim();
    const b = batch.value.trim();
    if (b.endsWith('%')) req.batchPercent = Number(b.slice(0, -1)) || 0;
    else req.batchSize = Number(b) || 0;
    submit.disabled = true;
    status.className = 'status-line';
    setText(status, 'deploying…');
    try {
      const r = await call('Deploy', req, { signal: dialogScope.signal });
      status.className = 'status-line ok';
      if (r.rollout && r.rollout.id) setText(status, `rollout ${r.rollout.id} started on ${(r.rollout.hosts || []).length} host(s): follow it on the Rollouts page`);
      else if (!r.changed) setText(status, 'already deployed so: nothing changed');
      else setText(status, `deployed: ${(r.hosts || []).length} host(s) told`);
      onDone();
      setTimeout(() => dialog.open && dialog.close(), 1500);
    } catch (e) {
      if (e.name === 'AbortError') return;
      status.className = 'status-line bad';
      setText(status, e instanceof ApiError ? e.describe() : e.message);
      submit.disabled = false;
    }
  }
}
