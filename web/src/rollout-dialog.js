// "Rollout…": restart a module across the hosts matching a label selector (or all hosts),
// batch by batch, and watch it live (WatchRollout) to its final state.

import { call, watch, targetAll, targetSelector, ApiError } from './api.js';
import { h, setText } from './dom.js';
import * as fmt from './format.js';
import { openDialog } from './dialog.js';

export function openRolloutDialog({ module, hostLabels, scope }) {
  const { body, scope: dialogScope } = openDialog({
    title: `Restart ${module} across hosts`,
    testid: 'rollout-dialog',
    closeTestid: 'rollout-close',
    scope,
  });
  new RolloutDialog(body, dialogScope, module, hostLabels);
}

const FINISHED_HOST_STATES = ['ROLLOUT_HOST_STATE_DONE', 'ROLLOUT_HOST_STATE_FAILED', 'ROLLOUT_HOST_STATE_SKIPPED', 'ROLLOUT_HOST_STATE_INTERRUPTED'];

class RolloutDialog {
  constructor(body, scope, module, hostLabels) {
    this.scope = scope;
    this.module = module;

    const suggestion = Object.entries(hostLabels || {}).map(([k, v]) => `${k}=${v}`)[0] || 'env=prod';
    this.targetSelect = h('select', { class: 'input', testid: 'rollout-target' },
      h('option', { value: 'selector' }, 'hosts matching'),
      h('option', { value: 'all' }, 'all hosts'));
    this.selector = h('input', { class: 'input', testid: 'rollout-selector', placeholder: suggestion, spellcheck: false });
    this.batch = h('input', { class: 'input input-narrow', testid: 'rollout-batch', value: '1', title: 'hosts per batch, or a percentage (25%)' });
    this.maxUnavailable = h('input', { class: 'input input-narrow', testid: 'rollout-max-unavailable', type: 'number', min: '0', value: '0', title: '0 = the batch size' });
    this.failureThreshold = h('input', { class: 'input input-narrow', testid: 'rollout-failure-threshold', type: 'number', min: '1', value: '1' });
    this.matches = h('span', { class: 'muted', testid: 'rollout-matches' });
    this.startButton = h('button', { class: 'btn btn-primary', testid: 'rollout-start', onclick: () => this.start() }, 'Start rollout');
    this.form = h('fieldset', { class: 'rollout-form' },
      h('div', { class: 'form-row' }, h('label', {}, 'Restart on '), this.targetSelect, this.selector, this.matches),
      h('div', { class: 'form-row' },
        h('label', {}, 'batch size ', this.batch),
        h('label', {}, 'max unavailable ', this.maxUnavailable),
        h('label', {}, 'stop after failures ', this.failureThreshold)),
      h('div', { class: 'form-row' }, this.startButton,
        h('span', { class: 'muted small' }, 'Closing this window does not stop a rollout: the Rollouts tab follows it too.')));

    this.state = h('span', { class: 'badge idle', testid: 'rollout-state' }, 'not started');
    this.progress = h('progress', { class: 'rollout-progress', testid: 'rollout-progress', max: 1, value: 0 });
    this.progressText = h('span', { class: 'muted' });
    this.reason = h('div', { class: 'status-line' });
    this.hosts = h('tbody');
    body.append(this.form,
      h('div', { class: 'rollout-live' },
        h('div', { class: 'form-row' }, this.state, this.progress, this.progressText),
        this.reason,
        h('table', { class: 'table' },
          h('thead', {}, h('tr', {}, ['host', 'batch', 'state', 'error'].map((t) => h('th', {}, t)))),
          this.hosts)));

    // How many hosts the target matches, as the operator types.
    let debounce;
    const preview = () => {
      clearTimeout(debounce);
      debounce = setTimeout(() => this.preview(), 300);
    };
    scope.onDispose(() => clearTimeout(debounce));
    this.selector.addEventListener('input', preview);
    this.targetSelect.addEventListener('change', () => {
      this.selector.hidden = this.targetSelect.value === 'all';
      preview();
    });
  }

  target() {
    if (this.targetSelect.value === 'all') return targetAll();
    const selector = this.selector.value.trim();
    if (!selector) throw new Error('type a label selector (e.g. env=prod) or choose all hosts');
    return targetSelector(selector);
  }

  async preview() {
    try {
      const list = await call('ListHosts', { target: this.target(), pageSize: 1 }, { signal: this.scope.signal });
      setText(this.matches, `${list.totalSize} host${list.totalSize === 1 ? '' : 's'} (${list.onlineSize} online)`);
    } catch (e) {
      setText(this.matches, e instanceof ApiError ? e.describe() : '');
    }
  }

  // "3" → batchSize 3; "25%" → batchPercent 25.
  batchFields() {
    const text = this.batch.value.trim();
    const m = /^(\d+)\s*(%?)$/.exec(text);
    if (!m || Number(m[1]) === 0) throw new Error(`batch size "${text}" is not a number of hosts or a percentage`);
    return m[2] ? { batchPercent: Number(m[1]) } : { batchSize: Number(m[1]) };
  }

  async start() {
    let request;
    try {
      request = {
        target: this.target(),
        module: this.module,
        ...this.batchFields(),
        maxUnavailable: Number(this.maxUnavailable.value) || 0,
        failureThreshold: Number(this.failureThreshold.value) || 1,
      };
    } catch (e) {
      this.showReason(e.message, 'bad');
      return;
    }
    this.form.disabled = true;
    this.showReason('starting…', 'pending');
    try {
      let rollout = await call('Restart', request, { signal: this.scope.signal });
      this.render(rollout);
      await watch('WatchRollout', { id: rollout.id }, {
        signal: this.scope.signal,
        onMessage: (r) => {
          rollout = r;
          this.render(r);
        },
        onStatus: (text) => text && this.showReason(text, 'warn'),
        isFinished: () => rollout.state !== 'ROLLOUT_STATE_RUNNING',
      });
    } catch (e) {
      if (e.name === 'AbortError') return;
      this.showReason(e instanceof ApiError ? e.describe() : e.message, 'bad');
      this.form.disabled = false;
    }
  }

  render(rollout) {
    const hosts = rollout.hosts || [];
    const finished = hosts.filter((x) => FINISHED_HOST_STATES.includes(x.state)).length;
    const stateName = fmt.enumName(rollout.state, 'ROLLOUT_STATE_').toUpperCase();
    setText(this.state, stateName);
    this.state.dataset.rolloutId = rollout.id;
    this.state.className = `badge ${fmt.stateTone(rollout.state)}`;
    this.progress.max = Math.max(hosts.length, 1);
    this.progress.value = finished;
    this.progress.dataset.done = String(finished);
    this.progress.dataset.total = String(hosts.length);
    setText(this.progressText, `${finished}/${hosts.length} hosts · batch ${Math.min(rollout.currentBatch + 1, Math.max(rollout.batches, 1))}/${Math.max(rollout.batches, 1)} · rollout ${rollout.id}`);
    if (rollout.reason) this.showReason(rollout.reason, 'bad');
    else if (rollout.state === 'ROLLOUT_STATE_SUCCEEDED') this.showReason(`every host restarted ${this.module}`, 'ok');
    else this.showReason('', 'idle');
    this.hosts.replaceChildren(...rolloutHostRows(hosts));
  }

  showReason(text, tone) {
    this.reason.className = `status-line ${tone}`;
    setText(this.reason, text);
  }
}

// The per-host rows of a rollout (also used by the rollouts list).
export function rolloutHostRows(hosts) {
  return hosts.map((x) =>
    h('tr', { testid: 'rollout-host', dataset: { hostId: x.hostId } },
      h('td', {}, h('a', { href: `#/hosts/${encodeURIComponent(x.hostId)}` }, x.hostname || x.hostId)),
      h('td', {}, x.batch + 1),
      h('td', {}, h('span', { class: `badge ${fmt.stateTone(x.state)}` }, fmt.enumName(x.state, 'ROLLOUT_HOST_STATE_'))),
      h('td', { class: 'error-text' }, x.error)));
}
