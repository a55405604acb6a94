// One host: its facts, one widget per module, its other units and recent events.
// GetHost (every few seconds) brings facts, inventory and events; WatchMetrics brings every
// metrics batch (about once a second) for the charts, probes and process meta.

import { call, watch, targetHost, ApiError } from './api.js';
import { h, setText, labelChips } from './dom.js';
import * as fmt from './format.js';
import { ModuleWidget } from './module-widget.js';
import { openConfigDialog } from './config-dialog.js';
import { openRolloutDialog } from './rollout-dialog.js';

const DETAIL_REFRESH_MS = 5000;
const EVENTS_SHOWN = 15;

export function hostView(root, { scope, hostId }) {
  new HostView(root, scope, hostId).start();
}

class HostView {
  constructor(root, scope, hostId) {
    this.scope = scope;
    this.hostId = hostId;
    this.host = null;
    this.widgets = new Map(); // module name → ModuleWidget
    this.units = new Map(); // plain unit name → latest UnitSample

    this.title = h('h2', { testid: 'host-title' }, hostId);
    this.onlineBadge = h('span', { class: 'badge idle', hidden: true });
    this.live = h('span', { class: 'live muted' });
    this.error = h('div', { class: 'status-line bad', hidden: true });
    this.rejections = h('div', { class: 'banner bad', testid: 'config-rejections', role: 'alert', hidden: true });
    this.facts = h('dl', { class: 'facts' });
    this.hostUsage = h('div', { class: 'host-usage' });
    this.widgetGrid = h('div', { class: 'widget-grid-cards' });
    this.noModules = h('p', { class: 'muted', hidden: true }, 'No module is installed on this host.');
    this.unitRows = h('tbody');
    this.unitsSection = h('section', { class: 'page-section', hidden: true },
      h('h3', {}, 'Other units'),
      h('div', { class: 'card table-card' }, h('table', { class: 'table' },
        h('thead', {}, h('tr', {}, ['unit', 'state', 'pid', 'CPU', 'memory', 'restarts', 'uptime'].map((t) => h('th', {}, t)))),
        this.unitRows)));
    this.events = h('ul', { class: 'events' });

    // Shown once the host is loaded.
    this.content = h('div', { hidden: true },
      this.rejections,
      h('div', { class: 'card facts-card' }, this.facts, this.hostUsage),
      h('section', { class: 'page-section' }, h('h3', {}, 'Modules'), this.noModules, this.widgetGrid),
      this.unitsSection,
      h('section', { class: 'page-section' }, h('h3', {}, 'Recent events'), h('div', { class: 'card' }, this.events)));

    root.replaceChildren(h('section', { class: 'page' },
      h('nav', { class: 'breadcrumb' }, h('a', { href: '#/hosts' }, 'Hosts'), ' / ', h('span', { class: 'mono' }, hostId)),
      h('div', { class: 'page-head' }, this.title, this.onlineBadge, this.live),
      this.error,
      this.content));
  }

  async start() {
    if (!(await this.refresh())) return;
    this.scope.every(DETAIL_REFRESH_MS, () => this.refresh());
    this.scope.every(1000, () => {
      const now = Date.now();
      for (const w of this.widgets.values()) w.tick(now);
    });
    setText(this.live, 'connecting…');
    watch('WatchMetrics', { target: targetHost(this.hostId) }, {
      signal: this.scope.signal,
      onMessage: (m) => this.onMetrics(m),
      onStatus: (text) => {
        this.live.className = text ? 'live warn' : 'live ok';
        setText(this.live, text || 'live');
      },
    });
  }

  // GetHost; false when there is no such host (or the view ended): nothing more to do.
  // Other failures (control plane restarting) are shown and retried by the next refresh.
  async refresh() {
    try {
      const detail = await call('GetHost', { hostId: this.hostId }, { signal: this.scope.signal });
      this.error.hidden = true;
      this.render(detail);
      return true;
    } catch (e) {
      if (e.name === 'AbortError') return false;
      const missing = e instanceof ApiError && e.httpStatus === 404;
      this.error.hidden = false;
      setText(this.error, missing
        ? `No host "${this.hostId}" is registered.`
        : `Could not load the host: ${e instanceof ApiError ? e.describe() : e.message}`);
      return !missing;
    }
  }

  render(detail) {
    const host = detail.host;
    this.host = host;
    this.content.hidden = false;
    this.onlineBadge.hidden = false;
    setText(this.title, host.hostname || host.hostId);
    document.title = `${host.hostname} · Herd`;
    this.onlineBadge.className = `badge ${host.online ? 'ok' : 'idle'}`;
    setText(this.onlineBadge, host.online ? 'online' : `offline since ${fmt.ago(host.lastSeenUnixMs)}`);
    this.renderFacts(host);
    this.renderRejections(host.configRejections || []);
    this.renderHostUsage(host.usage || {});

    const modules = new Map((detail.modules || []).map((m) => [m.name, m]));
    for (const unit of detail.units || []) {
      if (unit.isModule && !modules.has(unit.name)) modules.set(unit.name, null);
    }
    this.syncWidgets([...modules.keys()].sort());
    for (const [name, inventory] of modules) {
      if (inventory) this.widgets.get(name).setInventory(inventory);
    }
    this.units.clear();
    for (const unit of detail.units || []) {
      if (unit.isModule) this.widgets.get(unit.name).setSample(unit);
      else this.units.set(unit.name, unit);
    }
    // Offline: what the widgets show is the last the host said, and nothing can reach it.
    for (const widget of this.widgets.values()) widget.setHostOnline(host.online, host.lastSeenUnixMs);
    this.renderUnits();
    this.renderEvents(detail.events || []);
  }

  // One widget per module, in name order; widgets of uninstalled modules go away.
  syncWidgets(names) {
    for (const [name, widget] of this.widgets) {
      if (!names.includes(name)) {
        widget.scope.dispose();
        widget.element.remove();
        this.widgets.delete(name);
      }
    }
    for (const name of names) {
      if (this.widgets.has(name)) continue;
      const widget = new ModuleWidget({
        hostId: this.hostId,
        name,
        scope: this.scope.child(),
        onConfigure: (module) => openConfigDialog({ hostId: this.hostId, hostname: this.host.hostname, module, scope: this.scope }),
        onRollout: (module) => openRolloutDialog({ module, hostLabels: this.host.labels, scope: this.scope }),
      });
      this.widgets.set(name, widget);
      widget.loadHistory().catch(() => {
        // No history yet (a module just installed): the live samples fill the charts.
      });
    }
    this.widgetGrid.replaceChildren(...names.map((n) => this.widgets.get(n).element));
    this.noModules.hidden = names.length > 0;
  }

  onMetrics(message) {
    if (message.hostId !== this.hostId || !message.batch) return;
    const batch = message.batch;
    if (this.host && batch.host) this.renderHostUsage(batch.host);
    for (const unit of batch.units || []) {
      const widget = this.widgets.get(unit.name);
      if (widget) widget.setSample(unit, batch.atUnixMs);
      else if (!unit.isModule) this.units.set(unit.name, unit);
    }
    this.renderUnits();
  }

  renderFacts(host) {
    const desired = Number(host.desiredConfigVersion);
    const acked = Number(host.ackedConfigVersion);
    const usage = host.usage || {};
    const fact = (name, ...value) => [h('dt', {}, name), h('dd', {}, ...value)];
    this.facts.replaceChildren(
      ...fact('host id', h('span', { class: 'mono' }, host.hostId)),
      ...fact('labels', h('span', { class: 'chips' }, labelChips(host.labels))),
      ...fact('kernel', host.kernel || '—', ' · ', host.arch || '?'),
      ...fact('CPUs', host.cpuCount || '—'),
      ...fact('memory', Number(usage.memoryTotalBytes) ? fmt.bytes(usage.memoryTotalBytes) : '—'),
      ...fact('agent', host.agentVersion || '—'),
      ...fact('address', host.remoteAddress || '—'),
      ...fact('connected since', fmt.dateTime(host.connectedAtUnixMs)),
      ...fact('last seen', fmt.ago(host.lastSeenUnixMs)),
      ...fact('config', h('span', { testid: 'config-versions' },
        `desired v${desired} · acked v${acked} `,
        h('span', { class: `badge ${acked >= desired ? 'ok' : 'warn'}` }, acked >= desired ? 'in sync' : 'pending'))),
      ...(Number(host.droppedBatches) ? fact('dropped batches', host.droppedBatches) : []));
  }

  renderRejections(rejections) {
    this.rejections.hidden = rejections.length === 0;
    this.rejections.replaceChildren(
      h('strong', {}, 'This host rejected its latest configuration'),
      h('span', {}, ' (it keeps running the last good one):'),
      h('ul', {}, rejections.map((r) => h('li', {}, h('code', {}, `${r.module}:${r.key}`), ` — ${r.reason}`))));
  }

  renderHostUsage(usage) {
    const total = Number(usage.memoryTotalBytes);
    const used = total - Number(usage.memoryAvailableBytes);
    const stat = (label, value) => h('div', { class: 'stat' }, h('span', { class: 'stat-value' }, value), h('span', { class: 'stat-label' }, label));
    this.hostUsage.replaceChildren(
      stat('host CPU', fmt.percent(usage.cpuPercent)),
      stat('memory used', total ? `${fmt.bytes(used)} / ${fmt.bytes(total)}` : '—'),
      stat('load 1 / 5 / 15', [usage.load1, usage.load5, usage.load15].map((l) => (Number(l) || 0).toFixed(2)).join(' / ')));
  }

  renderUnits() {
    const now = Date.now();
    const units = [...this.units.values()].sort((a, b) => a.name.localeCompare(b.name));
    this.unitsSection.hidden = units.length === 0;
    this.unitRows.replaceChildren(...units.map((u) => {
      const usage = u.usage || {};
      const started = Number(u.startedAtUnixMs);
      return h('tr', { testid: 'unit-row', dataset: { unit: u.name } },
        h('td', {}, u.name),
        h('td', { title: u.statusReason || '' }, h('span', { class: `badge ${fmt.stateTone(u.state)}` }, fmt.unitState(u.state))),
        h('td', { class: 'num' }, u.pid || '—'),
        h('td', { class: 'num' }, fmt.percent(usage.cpuPercent)),
        h('td', { class: 'num' }, fmt.bytes(usage.rssBytes)),
        h('td', { class: 'num' }, u.restarts),
        h('td', { class: 'num' }, u.state === 'UNIT_STATE_ONLINE' && started ? fmt.duration(now - started) : '—'));
    }));
  }

  renderEvents(events) {
    const shown = events.slice(-EVENTS_SHOWN).reverse();
    this.events.replaceChildren(...shown.map((e) =>
      h('li', {},
        h('time', { class: 'muted' }, fmt.time(e.atUnixMs)),
        h('span', { class: 'chip' }, e.unit),
        h('strong', {}, e.kind),
        h('span', {}, e.detail))));
    if (!shown.length) this.events.append(h('li', { class: 'muted' }, 'Nothing happened recently.'));
  }
}
