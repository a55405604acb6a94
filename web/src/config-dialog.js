// The "Configure" dialog of a module on a host (Keymetrics' Configure button): every key
// with its default, effective value and where that comes from; a value can be set or reset
// for this host, the whole fleet or a label selector, and the dialog follows the change
// until this host applies it (config version acknowledged) or rejects it.

import { call, ApiError } from './api.js';
import { h, setText } from './dom.js';
import * as fmt from './format.js';
import { openDialog } from './dialog.js';

const POLL_MS = 500;
const ACK_TIMEOUT_MS = 30000;

export function openConfigDialog({ hostId, hostname, module, scope }) {
  const { body, scope: dialogScope } = openDialog({
    title: `Configure ${module} on ${hostname}`,
    testid: 'config-dialog',
    closeTestid: 'config-close',
    scope,
  });
  new ConfigDialog(body, dialogScope, hostId, module).load();
}

class ConfigDialog {
  constructor(body, scope, hostId, module) {
    this.scope = scope;
    this.hostId = hostId;
    this.module = module;
    this.busy = false;

    this.scopeSelect = h('select', { class: 'input', testid: 'config-scope' },
      h('option', { value: 'host' }, 'this host'),
      h('option', { value: 'global' }, 'every host (global)'),
      h('option', { value: 'selector' }, 'hosts matching a label selector'));
    this.selectorInput = h('input', { class: 'input', testid: 'config-selector', placeholder: 'env=prod,role=cache', hidden: true, spellcheck: false });
    this.scopeSelect.addEventListener('change', () => {
      this.selectorInput.hidden = this.scopeSelect.value !== 'selector';
    });
    this.force = h('input', { type: 'checkbox', testid: 'config-force' });
    this.rows = h('tbody');
    this.status = h('div', { class: 'status-line', testid: 'config-status', role: 'status' });
    this.overrides = h('ul', { class: 'overrides' });

    body.append(
      h('div', { class: 'form-row' }, h('label', {}, 'Save and reset apply to '), this.scopeSelect, this.selectorInput,
        h('label', { class: 'force', title: 'Save a key the module does not declare, or a value of another type than its default (the hosts will reject what they cannot use)' }, this.force, 'force')),
      h('table', { class: 'table config-table' },
        h('thead', {}, h('tr', {}, ['key', 'default', 'effective', 'source', 'new value', ''].map((t) => h('th', {}, t)))),
        this.rows),
      this.status,
      h('p', { class: 'muted small' }, 'Values are given as text (PM2\'s layout), and as JSON for a key whose default is an array or an object (Ctrl+Enter saves); each host converts them to the type of the default and restarts the module when one of its values changes. Precedence: global < label selector < host.'),
      h('h4', {}, 'Stored overrides for this module'),
      this.overrides);
  }

  async load() {
    try {
      const config = await call('GetConfig', { module: this.module, hostId: this.hostId }, { signal: this.scope.signal });
      this.render(config);
    } catch (e) {
      this.report(e);
    }
  }

  render(config) {
    const mine = (config.effective || []).find((m) => m.module === this.module);
    const entries = mine ? mine.entries : [];
    this.rows.replaceChildren(...entries.map((entry) => this.row(entry)));
    if (!entries.length) this.rows.append(h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'This module declares no configuration.')));
    const overrides = (config.overrides || []).filter((o) => o.module === this.module);
    this.overrides.replaceChildren(...overrides.map((o) =>
      h('li', {}, h('code', {}, `${o.key}=${o.value}`), ` at ${scopeText(o.scope)}`,
        h('span', { class: 'muted' }, ` — ${o.updatedBy || 'unknown'}, ${fmt.dateTime(o.updatedAtUnixMs)}`))));
    if (!overrides.length) this.overrides.append(h('li', { class: 'muted' }, 'none: every key has its default'));
  }

  row(entry) {
    const editor = valueEditor(entry);
    const save = () => {
      const value = editor.value();
      if (value instanceof Error) this.show(`${entry.key}: ${value.message}`, 'bad');
      else this.change('SetConfig', entry.key, value);
    };
    editor.input.addEventListener('keydown', (e) => {
      // Enter saves a one-line value; a JSON editor takes Ctrl+Enter (Enter is a new line).
      if (e.key === 'Enter' && (!editor.json || e.ctrlKey || e.metaKey)) save();
    });
    return h('tr', { testid: 'config-row', dataset: { key: entry.key } },
      h('th', {}, entry.key),
      h('td', { testid: 'config-default' }, h('code', {}, entry.defaultJson || '(none)')),
      h('td', { testid: 'config-effective' }, h('code', {}, fmt.configText(entry.effectiveJson))),
      h('td', { testid: 'config-source' }, h('span', { class: `chip source-${entry.source.split(':')[0]}` }, entry.source)),
      h('td', {}, editor.element),
      h('td', { class: 'row-buttons' },
        h('button', { class: 'btn btn-small btn-primary', testid: 'config-save', onclick: save }, 'Save'),
        h('button', { class: 'btn btn-small', testid: 'config-reset', title: 'Remove the override at the chosen scope', onclick: () => this.change('UnsetConfig', entry.key) }, 'Reset')));
  }

  // The chosen scope as fleet.proto's Scope, or an Error to show.
  chosenScope() {
    switch (this.scopeSelect.value) {
      case 'global':
        return { global: true };
      case 'selector': {
        const selector = this.selectorInput.value.trim();
        if (!selector) throw new Error('type a label selector, e.g. env=prod');
        return { selector };
      }
      default:
        return { hostId: this.hostId };
    }
  }

  // SetConfig (value given) or UnsetConfig, then follow this host until it acknowledges.
  async change(method, key, value) {
    if (this.busy) return;
    this.busy = true;
    try {
      const request = { scope: this.chosenScope(), module: this.module, key };
      if (method === 'SetConfig') Object.assign(request, { value, force: this.force.checked });
      // Where this host stood before, to tell its answer to this change from older ones.
      const before = (await this.getHost()).host;
      this.show(`${method === 'SetConfig' ? 'saving' : 'resetting'} ${key}…`, 'pending');
      const change = await call(method, request, { signal: this.scope.signal });
      await this.follow(method, key, change, before);
      await this.load();
    } catch (e) {
      this.report(e);
    } finally {
      this.busy = false;
    }
  }

  async follow(method, key, change, before) {
    const hosts = change.hosts || [];
    if (!change.changed) {
      this.show(method === 'SetConfig'
        ? `nothing changed: ${key} already has this value at this scope`
        : `nothing changed: ${key} has no override at this scope`, 'idle');
      return;
    }
    const sent = `saved (revision ${change.revision}), sent to ${hosts.length} host${hosts.length === 1 ? '' : 's'}`;
    if (!hosts.includes(this.hostId)) {
      this.show(`${sent}; this host's effective configuration did not change (it already had this value, or a narrower scope overrides it)`, 'ok');
      return;
    }
    this.show(`${sent}; waiting for this host…`, 'pending');
    const beforeDesired = Number(before.desiredConfigVersion);
    const deadline = Date.now() + ACK_TIMEOUT_MS;
    let host = before;
    while (Date.now() < deadline) {
      await delay(POLL_MS, this.scope.signal);
      host = (await this.getHost()).host;
      const desired = Number(host.desiredConfigVersion);
      const acked = Number(host.ackedConfigVersion);
      const rejections = host.configRejections || [];
      if (desired <= beforeDesired) continue; // not computed for this host yet
      // The control plane shows a rejection only while it concerns the latest version sent.
      if (rejections.length) {
        this.show(`rejected: ${rejectionText(rejections)}`, 'bad');
        return;
      }
      if (acked >= desired && !rejections.length) {
        this.show(`${sent}; applied (config v${acked})`, 'ok');
        return;
      }
    }
    const rejections = host.configRejections || [];
    if (rejections.length) this.show(`rejected: ${rejectionText(rejections)}`, 'bad');
    else if (!host.online) this.show(`${sent}; not acknowledged yet: the host is offline and gets it when it reconnects`, 'warn');
    else this.show(`${sent}; not acknowledged yet (config v${host.desiredConfigVersion} sent, v${host.ackedConfigVersion} acknowledged)`, 'warn');
  }

  getHost() {
    return call('GetHost', { hostId: this.hostId }, { signal: this.scope.signal });
  }

  show(text, tone) {
    this.status.className = `status-line ${tone}`;
    setText(this.status, text);
  }

  report(e) {
    if (e.name === 'AbortError') return;
    this.show(e instanceof ApiError ? e.describe() : e.message, 'bad');
  }
}

// The kind of JSON a key's default is ('array', 'object'), or null for a scalar or no default.
export function jsonKind(defaultJson) {
  try {
    const v = JSON.parse(defaultJson);
    if (Array.isArray(v)) return 'array';
    if (v !== null && typeof v === 'object') return 'object';
  } catch {
    // no default: a scalar
  }
  return null;
}

// The input of a new value: one line of text for a scalar; for a key whose default is an
// array or an object, a JSON editor that checks the text as it is typed (the host checks it
// again: this only saves a round trip). value() is the text to send, or an Error.
function valueEditor(entry) {
  const kind = jsonKind(entry.defaultJson);
  if (!kind) {
    const input = h('input', { class: 'input', testid: 'config-input', value: fmt.configText(entry.effectiveJson), spellcheck: false, 'aria-label': `new value of ${entry.key}` });
    return { input, element: input, json: false, value: () => input.value };
  }
  let pretty = entry.effectiveJson;
  try {
    pretty = JSON.stringify(JSON.parse(entry.effectiveJson), null, 2);
  } catch {
    // shown as it is
  }
  const input = h('textarea', { class: 'input json-editor', testid: 'config-json', rows: Math.min(8, pretty.split('\n').length + 1), spellcheck: false, 'aria-label': `new value of ${entry.key} (JSON ${kind})` });
  input.value = pretty;
  const problem = h('div', { class: 'json-problem', testid: 'config-json-problem', role: 'alert' });
  const value = () => {
    let v;
    try {
      v = JSON.parse(input.value);
    } catch (e) {
      return new Error(`not valid JSON: ${e.message}`);
    }
    const isArray = Array.isArray(v);
    const isObject = v !== null && typeof v === 'object' && !isArray;
    if (kind === 'array' && !isArray) return new Error('must be a JSON array, e.g. ["a", "b"]');
    if (kind === 'object' && !isObject) return new Error('must be a JSON object, e.g. {"name": "value"}');
    return JSON.stringify(v);
  };
  input.addEventListener('input', () => {
    const v = value();
    setText(problem, v instanceof Error ? v.message : '');
    input.classList.toggle('invalid', v instanceof Error);
  });
  return { input, element: h('div', {}, input, problem), json: true, value };
}

function rejectionText(rejections) {
  return rejections.map((r) => `${r.module}:${r.key}: ${r.reason}`).join('; ');
}

function scopeText(scope) {
  if (!scope) return '?';
  if (scope.global) return 'global';
  if (scope.selector) return `selector ${scope.selector}`;
  return `host ${scope.hostId}`;
}

function delay(ms, signal) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      reject(new DOMException('dialog closed', 'AbortError'));
    }, { once: true });
  });
}
