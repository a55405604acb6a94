// End-to-end test of the dashboard in a real (headless) Chromium against a running control
// plane and agent: login, fleet search, a module's widget live, a permission error with the
// viewer token, an action, a config change followed to the host's acknowledgement, a
// rollout, the rollouts list. Run: node tests/e2e/dashboard.mjs (README.md for the inputs).
// Exits 0 on success, 1 naming the failed step; screenshots go to $HERD_ARTIFACTS.

import assert from 'node:assert/strict';
import os from 'node:os';
import path from 'node:path';
import { env, byAttr, waitFor, text, withBrowser, login as loginWith } from './lib.mjs';

const URL_ = env('HERD_URL').replace(/\/$/, '');
const TOKEN = env('HERD_TOKEN');
const VIEWER_TOKEN = env('HERD_VIEWER_TOKEN');
const HOST_ID = env('HERD_HOST_ID');
const HOSTNAME = env('HERD_HOSTNAME');
const MODULE = env('HERD_MODULE');
const SELECTOR = env('HERD_SELECTOR');
const ARTIFACTS = env('HERD_ARTIFACTS', path.join(os.tmpdir(), 'herd-dashboard-e2e'));
const CHROMIUM = env('CHROMIUM', '/usr/bin/chromium');

// The Fleet JSON API, for what the test must know independently of the page.
async function api(method, body, token = VIEWER_TOKEN) {
  const res = await fetch(`${URL_}/api/v1/${method}`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  assert.ok(res.ok, `${method}: HTTP ${res.status} ${await res.clone().text()}`);
  return res.json();
}

async function main() {
  let rolloutId = '';
  await withBrowser({ chromiumPath: CHROMIUM, artifacts: ARTIFACTS }, async ({ page, step, shot, problems, steps }) => {
    const widget = page.locator(byAttr('module-widget', 'data-module', MODULE));
    const number = async (locator, attr) => Number(await locator.getAttribute(attr));

    const login = (token) => loginWith(page, token);

    // Clicks an action with params and returns the reply once it is no longer pending.
    async function greet() {
      await widget.getByTestId('action-params').fill('name=e2e');
      await widget.locator(byAttr('action-button', 'data-action', 'greet')).click();
      const reply = widget.getByTestId('action-reply');
      return waitFor('the action reply', async () => {
        const t = await text(reply);
        return t && !t.startsWith('running') ? t : null;
      });
    }

    async function openConfig() {
      await widget.getByTestId('configure-button').click();
      const dialog = page.getByTestId('config-dialog');
      await dialog.waitFor();
      const row = dialog.locator(byAttr('config-row', 'data-key', 'greeting'));
      await row.waitFor();
      return { dialog, row };
    }

    async function configStatus(dialog, pattern) {
      const status = dialog.getByTestId('config-status');
      return waitFor(`config-status to match ${pattern}`, async () => {
        const t = await text(status);
        return pattern.test(t) ? t : null;
      }, 45000);
    }

    await step('login', async () => {
      await page.goto(URL_);
      await login('not-a-valid-token');
      await page.getByTestId('login-error').waitFor();
      assert.match(await text(page.getByTestId('login-error')), /401|not accepted/i);
      await login(VIEWER_TOKEN);
      await page.getByTestId('host-count').waitFor();
      await waitFor('the top bar to say the token is read-only', async () =>
        /viewer \(read-only\)/.test(await text(page.getByTestId('whoami'))));
    });

    await step('fleet-search', async () => {
      const hosts = await api('ListHosts', { pageSize: 1 });
      await waitFor('host-count to show the total', async () => (await text(page.getByTestId('host-count'))).includes(String(hosts.totalSize)));
      // Pages hold 50 hosts in hostname order: in a bigger fleet the host may be further on.
      if (hosts.totalSize <= 50) await page.locator(byAttr('host-row', 'data-host-id', HOST_ID)).waitFor();
      await page.getByTestId('host-search').fill(HOSTNAME);
      await waitFor(`the search for ${HOSTNAME} to list only matching hosts`, async () => {
        const rows = page.getByTestId('host-row');
        const ids = await rows.evaluateAll((els) => els.map((e) => e.dataset.hostId));
        return ids.includes(HOST_ID) && ids.length <= hosts.totalSize;
      });
      await page.getByTestId('host-search').fill('no-such-host-xyz');
      await waitFor('the search for no-such-host-xyz to list no host', async () =>
        (await page.getByTestId('host-row').count()) === 0 && /^0 /.test(await text(page.getByTestId('host-count'))));
      await page.getByTestId('host-search').fill(HOSTNAME);
      await page.locator(byAttr('host-row', 'data-host-id', HOST_ID)).waitFor();
    });

    await step('host-widget', async () => {
      await page.locator(byAttr('host-row', 'data-host-id', HOST_ID)).click();
      await waitFor('host-title to name the host', async () => (await text(page.getByTestId('host-title'))).includes(HOSTNAME));
      await widget.waitFor();
      const logo = widget.getByTestId('widget-logo');
      await logo.waitFor();
      assert.match(await logo.getAttribute('src'), /^(data:image\/|https:)/, 'widget-logo src');
      const detail = await api('GetHost', { hostId: HOST_ID });
      const inventory = detail.modules.find((m) => m.name === MODULE);
      assert.ok(inventory && inventory.widget && inventory.widget.theme.length, `${MODULE} announced no widget theme`);
      const [expected, actual] = await widget.getByTestId('widget-header').evaluate((header, color) => {
        const probe = document.createElement('span');
        probe.style.color = color;
        document.body.append(probe);
        const normalised = getComputedStyle(probe).color;
        probe.remove();
        return [normalised, getComputedStyle(header).backgroundColor];
      }, inventory.widget.theme[0]);
      assert.equal(actual, expected, `header background should be the theme's main colour ${inventory.widget.theme[0]}`);
      const ticks = widget.locator(byAttr('major-metric', 'data-probe', 'ticks'));
      await waitFor('major metric ticks to show a number', async () => Number.isFinite(parseFloat(await ticks.getAttribute('data-value'))));
    });

    await step('live-updates', async () => {
      const cpu = widget.getByTestId('cpu-chart');
      const ticks = widget.locator(byAttr('major-metric', 'data-probe', 'ticks'));
      const points = await number(cpu, 'data-points');
      const lastAt = await number(cpu, 'data-last-at');
      const ticks0 = await number(ticks, 'data-value');
      // The chart keeps 5 minutes: once that full (a module up that long), it slides instead
      // of growing.
      const full = points >= 200;
      await waitFor(`cpu-chart to plot new samples (${points} points, last at ${lastAt})`, async () =>
        (await number(cpu, 'data-last-at')) >= lastAt + 2000 && (await number(cpu, 'data-points')) >= (full ? points - 5 : points + 2));
      await waitFor(`ticks to increase past ${ticks0}`, async () => (await number(ticks, 'data-value')) > ticks0);
      assert.ok(Number.isFinite(await number(cpu, 'data-last')), 'cpu-chart data-last is a number');
    });

    await step('viewer-cannot-configure', async () => {
      const { dialog, row } = await openConfig();
      await row.getByTestId('config-input').fill('salut');
      await row.getByTestId('config-save').click();
      const status = await configStatus(dialog, /permission/i);
      assert.match(status, /permission denied/i);
      await dialog.getByTestId('config-close').click();
      await dialog.waitFor({ state: 'detached' });
      await page.getByTestId('logout').click();
      await login(TOKEN);
      await widget.waitFor();
      await waitFor('the top bar to show the operator token', async () =>
        /admin · operator/.test(await text(page.getByTestId('whoami'))));
    });

    await step('action', async () => {
      const reply = await greet();
      assert.match(reply, /hello, e2e/);
    });

    await step('configure', async () => {
      const restarts0 = Number(await text(widget.getByTestId('meta-restarts')));
      const { dialog, row } = await openConfig();
      assert.equal(await dialog.getByTestId('config-scope').inputValue(), 'host');
      await row.getByTestId('config-input').fill('bonjour');
      await row.getByTestId('config-save').click();
      await configStatus(dialog, /applied|rejected|not acknowledged/i).then((s) => assert.match(s, /applied/, s));
      await waitFor('greeting to show bonjour from scope host', async () =>
        (await text(row.getByTestId('config-effective'))).includes('bonjour') && (await text(row.getByTestId('config-source'))).includes('host'));
      await shot('configure-dialog', false);
      // Reset where there is nothing to reset: answered at once, nothing restarts.
      await dialog.getByTestId('config-scope').selectOption('global');
      await dialog.locator(byAttr('config-row', 'data-key', 'interval')).getByTestId('config-reset').click();
      await configStatus(dialog, /nothing changed/i);
      await dialog.getByTestId('config-close').click();
      await waitFor(`meta-restarts to pass ${restarts0} (the module restarts with its new config)`, async () =>
        Number(await text(widget.getByTestId('meta-restarts'))) > restarts0);
      // The restarted module registers its action again within a moment.
      await waitFor('greet to answer bonjour', async () => /bonjour, e2e/.test(await greet()));
    });

    await step('configure-json', async () => {
      // A key whose default is an array gets a JSON editor that says what is wrong before
      // anything is sent; a valid array reaches the module as an array.
      assert.match(await greet(), /teams: core\)/);
      const { dialog } = await openConfig();
      const row = dialog.locator(byAttr('config-row', 'data-key', 'teams'));
      const editor = row.getByTestId('config-json');
      assert.deepEqual(JSON.parse(await editor.inputValue()), ['core']);
      const problem = row.getByTestId('config-json-problem');
      await editor.fill('["ops",');
      await waitFor('the editor to say the JSON is invalid', async () => /not valid JSON/.test(await text(problem)));
      await row.getByTestId('config-save').click();
      await configStatus(dialog, /teams: not valid JSON/);
      await editor.fill('{"ops": 1}');
      await waitFor('the editor to ask for an array', async () => /must be a JSON array/.test(await text(problem)));
      await editor.fill('["ops", "dev"]');
      await waitFor('the problem to clear', async () => (await text(problem)) === '');
      await row.getByTestId('config-save').click();
      await configStatus(dialog, /applied|rejected|not acknowledged/i).then((st) => assert.match(st, /applied/, st));
      await waitFor('teams to show the new array', async () =>
        (await text(row.getByTestId('config-effective'))).includes('["ops","dev"]'));
      await dialog.getByTestId('config-close').click();
      await waitFor('greet to list the new teams', async () => /teams: ops\+dev\)/.test(await greet()));
    });

    await step('restart', async () => {
      // Restart on this host: the button asks for a second click to confirm, then follows the
      // one-host rollout to its end, and the module's restart count goes up.
      const restarts0 = Number(await text(widget.getByTestId('meta-restarts')));
      const pid0 = await text(widget.getByTestId('meta-pid'));
      await widget.getByTestId('restart-button').click();
      await widget.getByTestId('restart-button').click();
      const status = widget.getByTestId('restart-status');
      const final = await waitFor('the restart to finish', async () => {
        const t = await text(status);
        return /^restarted|failed|aborted/i.test(t) ? t : null;
      }, 60000);
      assert.match(final, /^restarted/, final);
      await waitFor(`meta-restarts to pass ${restarts0} and the pid to change`, async () =>
        Number(await text(widget.getByTestId('meta-restarts'))) > restarts0 &&
        (await text(widget.getByTestId('meta-pid'))) !== pid0);
    });

    await step('rollout', async () => {
      await widget.getByTestId('rollout-button').click();
      const dialog = page.getByTestId('rollout-dialog');
      await dialog.getByTestId('rollout-selector').fill(SELECTOR);
      await dialog.getByTestId('rollout-batch').fill('1');
      await dialog.getByTestId('rollout-start').click();
      const state = dialog.getByTestId('rollout-state');
      const final = await waitFor('the rollout to end', async () => {
        const t = await text(state);
        return /SUCCEEDED|FAILED|ABORTED/.test(t) ? t : null;
      }, 90000);
      assert.match(final, /SUCCEEDED/, `rollout ended ${final}: ${await text(dialog)}`);
      rolloutId = await state.getAttribute('data-rollout-id');
      await shot('rollout-dialog', false);
      await dialog.getByTestId('rollout-close').click();
    });

    await step('rollouts-list', async () => {
      await page.getByTestId('nav-rollouts').click();
      const row = page.locator(byAttr('rollout-row', 'data-rollout-id', rolloutId));
      await row.waitFor();
      assert.match(await text(row), /SUCCEEDED/);
    });

    assert.deepEqual(problems, [], 'the page raised errors');
    console.log(`dashboard e2e: all ${steps()} steps passed (screenshots in ${ARTIFACTS})`);
  });
}

main().catch((e) => {
  console.error(`dashboard e2e FAILED: ${e.message}`);
  process.exit(1);
});
