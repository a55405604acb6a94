// One module on one host, drawn as Keymetrics draws it and honouring the module's widget
// options (PM2's initModule({widget})): logo, theme colours, el.probes / el.actions,
// block.cpu / mem / issues / meta / meta_block / actions, and main_probes as major metrics.
//
// Built once per module and then updated in place: setInventory() with what GetHost says
// (widget options, actions, issues), setSample() with every live UnitSample, so charts,
// inputs and the last action reply survive refreshes.

import { call, watch, targetHost, ApiError } from './api.js';
import { h, setText, safeColor, safeImageUrl, looksLikeHtml, safeHtml } from './dom.js';
import * as fmt from './format.js';
import { SeriesChart } from './chart.js';

// A module that did not announce a widget shows everything, as PM2 does.
const DEFAULT_WIDGET = {
  logo: '',
  theme: [],
  elProbes: true,
  elActions: true,
  blockActions: true,
  blockCpu: true,
  blockMem: true,
  blockIssues: true,
  blockMeta: true,
  blockMetaBlock: true,
  mainProbes: [],
};

const HISTORY_MS = 5 * 60 * 1000;

const WIDGET_FLAGS = ['elProbes', 'elActions', 'blockActions', 'blockCpu', 'blockMem', 'blockIssues', 'blockMeta', 'blockMetaBlock'];

// The widget to draw: the module's, or the show-everything default when it announced none,
// or one with every block off (proto3 JSON leaves false flags out, so a widget that is
// only {} or {theme} reads that way): a card with nothing in it is never what was meant.
export function effectiveWidget(widget) {
  if (!widget || !WIDGET_FLAGS.some((f) => widget[f])) return { ...DEFAULT_WIDGET, ...(widget || {}), ...Object.fromEntries(WIDGET_FLAGS.map((f) => [f, true])) };
  return { ...DEFAULT_WIDGET, ...Object.fromEntries(WIDGET_FLAGS.map((f) => [f, Boolean(widget[f])])), ...widget };
}

// PM2's theme is four colours; @pm2/io prepends its four defaults to a module's own (an
// older agent passes all eight): the module's are the last four.
function moduleTheme(theme) {
  return (theme || []).length > 4 ? theme.slice(-4) : theme || [];
}

export class ModuleWidget {
  // onConfigure(name) / onRollout(name): open the host view's dialogs for this module.
  constructor({ hostId, name, scope, onConfigure, onRollout }) {
    this.hostId = hostId;
    this.name = name;
    this.scope = scope;
    this.inventory = null;
    this.unit = null;
    this.rendered = {}; // what was last drawn per block, to skip identical redraws

    // In the header only while the module gives a usable logo.
    this.logo = h('img', { class: 'widget-logo', testid: 'widget-logo', alt: '' });
    // Shown instead of a logo that is missing or does not load (never a broken image).
    this.letterMark = h('span', { class: 'widget-logo letter-mark', testid: 'widget-letter', 'aria-hidden': 'true' }, (name.match(/[a-z0-9]/i) || ['?'])[0].toUpperCase());
    this.logo.addEventListener('error', () => {
      this.failedLogo = this.logo.getAttribute('src');
      this.logo.replaceWith(this.letterMark);
    });
    this.hostOnline = true;
    this.stateBadge = h('span', { class: 'badge idle' }, 'unknown');
    this.subtitle = h('span', { class: 'widget-sub' });
    this.restartButton = h('button', { class: 'btn btn-small', testid: 'restart-button', title: 'Restart this module on this host now', dataset: { title: 'Restart this module on this host now' }, onclick: () => this.restartNow() }, 'Restart');
    this.configureButton = h('button', { class: 'btn btn-small', testid: 'configure-button', onclick: () => onConfigure(name) }, 'Configure');
    this.restartStatus = h('span', { class: 'restart-status', testid: 'restart-status' });
    this.header = h('header', { class: 'widget-header', testid: 'widget-header' },
      h('div', { class: 'widget-title' }, h('h3', {}, name), this.subtitle),
      this.stateBadge,
      h('div', { class: 'widget-buttons' },
        this.configureButton,
        this.restartButton,
        h('button', { class: 'btn btn-small', testid: 'rollout-button', title: 'Restart across hosts, batch by batch', onclick: () => onRollout(name) }, 'Rollout…')));

    this.majorMetrics = h('div', { class: 'major-metrics' });
    this.probeRows = h('tbody');
    this.probesBlock = h('section', { class: 'block probes-block' },
      h('h4', {}, 'Metrics'), h('table', { class: 'kv-table' }, this.probeRows));

    this.cpuValue = h('span', { class: 'chart-value' });
    this.memValue = h('span', { class: 'chart-value' });
    const cpuChart = h('div', { class: 'chart', testid: 'cpu-chart' });
    const memChart = h('div', { class: 'chart', testid: 'mem-chart' });
    this.cpuBlock = h('section', { class: 'block chart-block' }, h('h4', {}, 'CPU ', this.cpuValue), cpuChart);
    this.memBlock = h('section', { class: 'block chart-block' }, h('h4', {}, 'Memory ', this.memValue), memChart);

    this.actionParams = h('input', { class: 'input', testid: 'action-params', placeholder: 'parameters: key=value, key2=value2', spellcheck: false });
    this.actionButtons = h('div', { class: 'action-buttons' });
    this.actionReply = h('pre', { class: 'action-reply', testid: 'action-reply', hidden: true });
    this.actionsBlock = h('section', { class: 'block actions-block' },
      h('h4', {}, 'Actions'), this.actionButtons, this.actionParams, this.actionReply);

    this.issuesCount = h('span', { class: 'issues-count', testid: 'issues-count' }, '0');
    this.issuesList = h('ul', { class: 'issues' });
    this.clearIssuesButton = h('button', { class: 'btn btn-small', testid: 'issues-clear', title: 'Forget this module\'s issues on this host', dataset: { title: 'Forget this module\'s issues on this host' }, onclick: () => this.clearIssues() }, 'Clear');
    this.issuesBlock = h('section', { class: 'block issues-block' },
      h('h4', {}, 'Issues ', this.issuesCount, ' ', this.clearIssuesButton), this.issuesList);

    const metaValue = (testid) => h('dd', { testid });
    this.meta = {
      version: metaValue('meta-version'),
      state: metaValue('meta-state'),
      restarts: metaValue('meta-restarts'),
      uptime: metaValue('meta-uptime'),
      interpreter: metaValue('meta-interpreter'),
      pid: metaValue('meta-pid'),
    };
    // block.meta: what the module is; block.meta_block: how its process runs (PM2's
    // "restart nb, interpreter...").
    this.metaBlock = h('section', { class: 'block meta-block' }, h('h4', {}, 'Module'),
      h('dl', { class: 'meta' }, h('dt', {}, 'version'), this.meta.version, h('dt', {}, 'state'), this.meta.state));
    this.processBlock = h('section', { class: 'block meta-block' }, h('h4', {}, 'Process'),
      h('dl', { class: 'meta' },
        h('dt', {}, 'restarts'), this.meta.restarts, h('dt', {}, 'uptime'), this.meta.uptime,
        h('dt', {}, 'interpreter'), this.meta.interpreter, h('dt', {}, 'pid'), this.meta.pid));

    this.element = h('article', { class: 'card module-widget', testid: 'module-widget', dataset: { module: name } },
      this.header,
      this.restartStatus,
      this.majorMetrics,
      h('div', { class: 'widget-row charts-row' }, this.cpuBlock, this.memBlock),
      h('div', { class: 'widget-row info-row' }, this.probesBlock, this.metaBlock, this.processBlock),
      this.actionsBlock,
      this.issuesBlock);

    this.cpuChart = new SeriesChart(cpuChart, { label: 'CPU', format: fmt.percent, color: '#2f7de1' });
    this.memChart = new SeriesChart(memChart, { label: 'Memory', format: fmt.bytes, color: '#8a4fd8' });
    scope.onDispose(() => {
      this.cpuChart.destroy();
      this.memChart.destroy();
    });
    this.applyWidget(DEFAULT_WIDGET);
  }

  // The charts' recent history (the control plane keeps a few minutes in memory).
  async loadHistory() {
    const since = String(Date.now() - HISTORY_MS);
    const query = (metric) => call('QuerySeries', { hostId: this.hostId, unit: this.name, metric, sinceUnixMs: since }, { signal: this.scope.signal });
    const [cpu, rss] = await Promise.all([query('cpu'), query('rss')]);
    this.cpuChart.load(cpu.points || []);
    this.memChart.load(rss.points || []);
  }

  // ModuleInventory from GetHost: widget options, actions, issues, version.
  setInventory(inventory) {
    this.inventory = inventory;
    this.applyWidget(effectiveWidget(inventory.widget));
    const description = [inventory.version && `v${inventory.version}`, inventory.description].filter(Boolean).join(' · ');
    setText(this.subtitle, description);
    // The program's name; its full path on hover.
    setText(this.meta.interpreter, (inventory.interpreter || '—').split('/').pop());
    this.meta.interpreter.title = inventory.interpreter || '';
    this.renderActions(inventory.actions || []);
    this.renderIssues(inventory.recentIssues || []);
    if (!this.unit) {
      this.setState(inventory.state, '');
      setText(this.meta.version, inventory.version || '—');
    }
  }

  // A UnitSample (from GetHost or WatchMetrics); atUnixMs set for live samples.
  setSample(unit, atUnixMs) {
    this.unit = unit;
    this.setState(unit.state, unit.statusReason);
    setText(this.meta.version, unit.version || (this.inventory && this.inventory.version) || '—');
    setText(this.meta.restarts, unit.restarts);
    setText(this.meta.pid, unit.pid || '—');
    setText(this.issuesCount, Number(unit.issuesCount) || 0);
    const usage = unit.usage || {};
    setText(this.cpuValue, fmt.percent(usage.cpuPercent));
    setText(this.memValue, fmt.bytes(usage.rssBytes));
    if (atUnixMs) {
      this.cpuChart.append(atUnixMs, usage.cpuPercent || 0);
      this.memChart.append(atUnixMs, Number(usage.rssBytes) || 0);
    }
    this.renderProbes(unit.probes || [], unit.mainProbes || []);
    this.tick(Date.now());
  }

  // Every second: the uptime moves on between samples.
  tick(now) {
    const started = this.unit && Number(this.unit.startedAtUnixMs);
    const running = this.unit && this.unit.state === 'UNIT_STATE_ONLINE' && started;
    setText(this.meta.uptime, running ? fmt.duration(now - started) : '—');
  }

  applyWidget(widget) {
    this.widget = widget;
    const logo = safeImageUrl(widget.logo);
    if (!logo || logo === this.failedLogo) {
      this.logo.remove();
      if (this.letterMark.parentNode !== this.header) this.header.prepend(this.letterMark);
    } else {
      this.letterMark.remove();
      if (this.logo.getAttribute('src') !== logo) this.logo.src = logo;
      if (this.logo.parentNode !== this.header) this.header.prepend(this.logo);
    }

    // theme: main, secondary, main border, secondary border (PM2's order); anything the
    // browser does not parse as a colour is ignored.
    const theme = moduleTheme(widget.theme);
    const vars = ['--w-main', '--w-secondary', '--w-border', '--w-border2'];
    vars.forEach((name, i) => {
      const color = safeColor(theme[i]);
      if (color) this.element.style.setProperty(name, color);
      else this.element.style.removeProperty(name);
    });
    const main = safeColor(theme[0]);
    this.element.classList.toggle('themed', Boolean(main));
    this.header.classList.toggle('on-dark', Boolean(main) && isDark(main));

    this.probesBlock.hidden = !widget.elProbes;
    // Keymetrics drew el.* in the module's panel and block.* in its detail view; there is
    // one card here, so either flag shows the block (pm2-server-monit: el.actions true,
    // block.actions false, and its actions were reachable).
    this.actionsBlock.hidden = !(widget.elActions || widget.blockActions);
    this.cpuBlock.hidden = !widget.blockCpu;
    this.memBlock.hidden = !widget.blockMem;
    this.issuesBlock.hidden = !widget.blockIssues;
    this.metaBlock.hidden = !widget.blockMeta;
    this.processBlock.hidden = !widget.blockMetaBlock;
  }

  setState(state, reason) {
    this.state = state;
    this.reason = reason;
    this.drawState();
  }

  // The host went away (or came back): an offline host's modules are not "online", their
  // values are the last known, and nothing can be sent to them.
  setHostOnline(online, lastSeenUnixMs) {
    this.hostOnline = online;
    this.lastSeenUnixMs = lastSeenUnixMs;
    this.drawState();
  }

  drawState() {
    const name = fmt.unitState(this.state);
    const running = this.state === 'UNIT_STATE_ONLINE';
    if (!this.hostOnline) {
      setText(this.stateBadge, 'host offline');
      this.stateBadge.className = 'badge idle';
      this.stateBadge.title = `last seen ${fmt.ago(this.lastSeenUnixMs)}; was ${name}`;
    } else {
      setText(this.stateBadge, name);
      this.stateBadge.className = `badge ${fmt.stateTone(this.state)}`;
      this.stateBadge.title = '';
    }
    setText(this.meta.state, this.reason ? `${name}: ${this.reason}` : name);
    // Probes of a process that is not running (or of an unreachable host) are history.
    const stale = !this.hostOnline || !running;
    this.element.classList.toggle('stale', stale);
    this.majorMetrics.dataset.stale = String(stale);
    this.probesBlock.dataset.stale = String(stale);
    const unreachable = !this.hostOnline ? 'the host is offline' : '';
    for (const b of [this.restartButton, this.configureButton, this.clearIssuesButton, ...this.actionButtons.querySelectorAll('button')]) {
      if (!b) continue;
      b.disabled = Boolean(unreachable);
      b.title = unreachable || b.dataset.title || '';
    }
  }

  // main_probes (the widget's, else the agent's pick) as big numbers; the rest in a table.
  renderProbes(probes, unitMainProbes) {
    const declared = this.widget.mainProbes || [];
    const main = declared.length ? declared : unitMainProbes;
    const byName = new Map(probes.map((p) => [p.name, p]));
    const key = JSON.stringify([main, probes.map((p) => p.name)]);
    if (this.rendered.probes !== key) {
      this.rendered.probes = key;
      this.majorMetrics.replaceChildren(...main.map((name) =>
        h('div', { class: 'major-metric', testid: 'major-metric', dataset: { probe: name } },
          h('span', { class: 'major-value' }), h('span', { class: 'major-name' }, name))));
      this.probeRows.replaceChildren(...probes.filter((p) => !main.includes(p.name)).map((p) =>
        h('tr', { testid: 'probe', dataset: { probe: p.name } }, h('th', {}, p.name), h('td', { class: 'probe-value' }))));
      this.majorMetrics.hidden = main.length === 0;
      if (!this.probeRows.children.length) {
        this.probeRows.append(h('tr', {}, h('td', { class: 'muted' }, main.length ? 'No other metrics.' : 'No metrics reported.')));
      }
    }
    for (const el of this.majorMetrics.children) {
      const probe = byName.get(el.dataset.probe);
      el.dataset.value = probe ? probeNumberOrText(probe) : '';
      setText(el.firstChild, probe ? probeText(probe) : '—');
    }
    for (const row of this.probeRows.querySelectorAll('[data-probe]')) {
      const probe = byName.get(row.dataset.probe);
      row.dataset.value = probeNumberOrText(probe);
      setText(row.lastChild, probeText(probe));
    }
  }

  renderActions(actions) {
    const key = JSON.stringify(actions.map((a) => a.name));
    if (this.rendered.actions === key) return;
    this.rendered.actions = key;
    this.actionButtons.replaceChildren(...actions.map((a) =>
      h('button', { class: 'btn btn-small', testid: 'action-button', dataset: { action: a.name, title: `${a.type || 'custom'} action` }, title: `${a.type || 'custom'} action`, onclick: (e) => this.trigger(a.name, e.currentTarget) }, a.name)));
    if (!actions.length) this.actionButtons.append(h('span', { class: 'muted' }, 'This module registered no actions.'));
    this.drawState();
  }

  // Grouped by name and message on the agent: one line per group with its count, the last
  // time (and the first, when it repeated), latest first.
  renderIssues(issues) {
    const key = JSON.stringify(issues);
    if (this.rendered.issues === key) return;
    this.rendered.issues = key;
    this.issuesList.replaceChildren(...issues.slice().reverse().map((issue) => {
      const count = Math.max(1, Number(issue.count) || 1);
      return h('li', { class: 'issue', testid: 'issue', dataset: { count: String(count) } },
        h('div', { class: 'issue-head' },
          h('strong', {}, issue.name || 'Error'), ' ', h('span', {}, issue.message),
          count > 1 && h('span', { class: 'chip issue-count', testid: 'issue-count', title: `first ${fmt.dateTime(issue.firstAtUnixMs)}` }, `×${count}`),
          h('time', { class: 'muted' }, fmt.dateTime(issue.atUnixMs))),
        issue.stack && h('details', {}, h('summary', {}, 'stack'), h('pre', {}, issue.stack)));
    }));
    this.clearIssuesButton.hidden = !issues.length;
    if (!issues.length) this.issuesList.append(h('li', { class: 'muted' }, 'No issues reported.'));
  }

  async clearIssues() {
    this.clearIssuesButton.disabled = true;
    try {
      const reply = await call('TriggerAction', { target: targetHost(this.hostId), module: this.name, action: 'herd:clear-issues' }, { signal: this.scope.signal });
      const result = (reply.results || [])[0];
      if (result && result.ok) {
        this.renderIssues([]);
        setText(this.issuesCount, 0);
      } else this.showReply(`clear issues: ${result ? result.error : 'no reply from the host'}`, 'error');
    } catch (e) {
      if (e.name !== 'AbortError') this.showReply(e instanceof ApiError ? e.describe() : e.message, 'error');
    } finally {
      this.clearIssuesButton.disabled = !this.hostOnline;
    }
  }

  async trigger(action, button) {
    let params;
    try {
      params = parseParams(this.actionParams.value);
    } catch (e) {
      this.showReply(e.message, 'error');
      return;
    }
    button.disabled = true;
    this.showReply(`running ${action}…`, 'pending');
    try {
      const reply = await call('TriggerAction', { target: targetHost(this.hostId), module: this.name, action, params }, { signal: this.scope.signal });
      const results = reply.results || [];
      const result = results.find((r) => r.hostId === this.hostId) || results[0];
      if (!result) this.showReply('no reply from the host', 'error');
      else if (result.ok) {
        const stream = (result.stream || []).join('\n');
        this.showReply([stream, fmt.replyText(result.replyJson)].filter(Boolean).join('\n'), 'ok', result.elapsedMs);
      } else this.showReply(`error: ${result.error}`, 'error', result.elapsedMs);
    } catch (e) {
      if (e.name !== 'AbortError') this.showReply(e instanceof ApiError ? e.describe() : e.message, 'error');
    } finally {
      button.disabled = false;
    }
  }

  showReply(text, tone, elapsedMs) {
    this.actionReply.hidden = false;
    this.actionReply.className = `action-reply ${tone}`;
    if (tone === 'ok' && looksLikeHtml(text)) this.actionReply.replaceChildren(safeHtml(text));
    else this.actionReply.textContent = text;
    if (elapsedMs !== undefined) this.actionReply.append(h('span', { class: 'muted elapsed' }, `\n(${elapsedMs} ms)`));
  }

  // Restart on this host: a one-host rollout. The first click arms the button, a second one
  // within 4 s restarts (a stray click must not restart production).
  async restartNow() {
    if (!this.restartArmed) {
      this.restartArmed = true;
      setText(this.restartButton, 'Confirm restart');
      this.restartButton.classList.add('btn-danger');
      this.scope.after(4000, () => this.disarmRestart());
      return;
    }
    this.disarmRestart();
    this.restartButton.disabled = true;
    this.showRestartStatus('restarting…', 'warn');
    try {
      const rollout = await call('Restart', { target: targetHost(this.hostId), module: this.name, batchSize: 1 }, { signal: this.scope.signal });
      let last = rollout;
      await watch('WatchRollout', { id: rollout.id }, {
        signal: this.scope.signal,
        onMessage: (r) => { last = r; },
        onStatus: (text) => text && this.showRestartStatus(text, 'warn'),
        isFinished: () => last.state !== 'ROLLOUT_STATE_RUNNING',
      });
      const ok = last.state === 'ROLLOUT_STATE_SUCCEEDED';
      const failure = (last.hosts || []).map((x) => x.error).find(Boolean) || last.reason;
      this.showRestartStatus(ok ? 'restarted' : `restart ${fmt.enumName(last.state, 'ROLLOUT_STATE_')}: ${failure || ''}`, ok ? 'ok' : 'bad');
    } catch (e) {
      if (e.name !== 'AbortError') this.showRestartStatus(e instanceof ApiError ? e.describe() : e.message, 'bad');
    } finally {
      this.restartButton.disabled = false;
    }
  }

  disarmRestart() {
    this.restartArmed = false;
    setText(this.restartButton, 'Restart');
    this.restartButton.classList.remove('btn-danger');
  }

  showRestartStatus(text, tone) {
    this.restartStatus.className = `restart-status ${tone}`;
    setText(this.restartStatus, text);
  }
}

// "name=e2e, count=3" → {name: "e2e", count: "3"} (the Fleet API's params are strings).
function parseParams(text) {
  const params = {};
  for (const part of text.split(',')) {
    if (!part.trim()) continue;
    const eq = part.indexOf('=');
    if (eq <= 0) throw new Error(`"${part.trim()}" is not key=value`);
    params[part.slice(0, eq).trim()] = part.slice(eq + 1).trim();
  }
  return params;
}

function probeText(probe) {
  if (!probe) return '—';
  const value = probe.value || (probe.numeric ? String(probe.number) : '');
  return probe.unit && !value.endsWith(probe.unit) ? `${value} ${probe.unit}` : value;
}

function probeNumberOrText(probe) {
  if (!probe) return '';
  return probe.numeric ? String(probe.number) : probe.value;
}

// Whether text on this background should be white (relative luminance, WCAG).
function isDark(color) {
  const ctx = document.createElement('canvas').getContext('2d');
  ctx.fillStyle = color;
  const hex = ctx.fillStyle; // normalised: "#rrggbb" or "rgba(r, g, b, a)"
  const rgb = hex.startsWith('#')
    ? [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16))
    : hex.match(/[\d.]+/g).slice(0, 3).map(Number);
  const [r, g, b] = rgb.map((c) => {
    const s = c / 255;
    return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.4;
}
