// The operator's pages (issue 24) in a real (headless) Chromium: the hosts table with each
// host's modules and issue count, the Modules page (versions, hosts, issues, a deployment
// made from its dialog with its drift, undeployed again), the Logs page (live lines, pause,
// filter) and the Audit page (filtered by actor and by action).
// Run by dashboard_test (DashboardTest.OperatorPages...). Exits 0, or 1 naming the step.

import assert from 'node:assert/strict';
import os from 'node:os';
import path from 'node:path';
import { env, byAttr, waitFor, text, withBrowser, login } from './lib.mjs';

const URL_ = env('HERD_URL').replace(/\/$/, '');
const TOKEN = env('HERD_TOKEN');
const HOST_ID = env('HERD_HOST_ID');
const MODULE = env('HERD_MODULE');
const LOG_UNIT = env('HERD_LOG_UNIT');
const ARTIFACTS = env('HERD_ARTIFACTS', path.join(os.tmpdir(), 'herd-dashboard-pages'));
const CHROMIUM = env('CHROMIUM', '/usr/bin/chromium');

async function main() {
  await withBrowser({ chromiumPath: CHROMIUM, artifacts: ARTIFACTS }, async ({ page, step, problems }) => {
    page.on('dialog', (d) => d.accept());  // Undeploy asks to confirm

    await step('hosts-table-shows-modules-and-issues', async () => {
      await page.goto(`${URL_}/#/hosts`);
      await login(page, TOKEN);
      const row = page.locator(byAttr('host-row', 'data-host-id', HOST_ID));
      await waitFor('the host row to list its module', async () => (await text(row.getByTestId('host-modules'))).includes(MODULE));
      await waitFor('the host row to count its issues', async () => Number(await text(row.getByTestId('host-issues'))) >= 1);
    });

    await step('modules-page', async () => {
      await page.getByTestId('nav-modules').click();
      const row = page.locator(byAttr('module-row', 'data-module', MODULE));
      await waitFor('the module row', async () => (await text(row.getByTestId('module-hosts'))) === '1/1');
      assert.match(await text(row.getByTestId('module-version')), /1\.4\.2 × 1/);
      assert.ok(Number(await text(row.getByTestId('module-issues'))) >= 1, 'no issue counted');
      assert.match(await text(row.getByTestId('module-wanted')), /installed by hand/);
      await row.click();
      await page.getByTestId('module-hosts-table').waitFor();
    });

    await step('deploy-from-the-dialog-and-see-its-drift', async () => {
      await page.getByTestId('deploy-open').click();
      const dialog = page.getByTestId('deploy-dialog');
      await dialog.getByTestId('deploy-source').fill('/nonexistent/e2e-missing.tgz');
      await dialog.getByTestId('deploy-name').fill('e2e-missing');
      await dialog.getByTestId('deploy-scope').selectOption('host');
      await dialog.getByTestId('deploy-scope-value').fill(HOST_ID);
      await dialog.getByTestId('deploy-submit').click();
      await waitFor('the deploy to be accepted', async () => /deployed: 1 host/.test(await text(dialog.getByTestId('deploy-status'))));
      const row = page.locator(byAttr('module-row', 'data-module', 'e2e-missing'));
      await waitFor('the declaration to show as failing', async () => /0\/1 · 1 failing/.test(await text(row.getByTestId('module-converged'))));
      await row.click();
      const drift = page.locator(byAttr('module-detail', 'data-module', 'e2e-missing')).getByTestId('drift-row');
      await waitFor('the drift row with its reason', async () => /e2e-missing\.tgz/.test(await text(drift)));
      assert.match(await text(drift), /failed/);
    });

    await step('undeploy', async () => {
      const detail = page.locator(byAttr('module-detail', 'data-module', 'e2e-missing'));
      await detail.getByTestId('undeploy').click();
      await waitFor('the declaration to go', async () => (await page.locator(byAttr('module-row', 'data-module', 'e2e-missing')).count()) === 0);
    });

    await step('logs-follow-pause-filter', async () => {
      await page.getByTestId('nav-logs').click();
      await page.getByTestId('logs-host').fill(HOST_ID);
      await page.getByTestId('logs-unit').fill(LOG_UNIT);
      await page.getByTestId('logs-open').click();
      const lines = page.getByTestId('log-line');
      await waitFor('live lines', async () => (await lines.count()) >= 3);
      await waitFor('the status to say live', async () => /live/.test(await text(page.getByTestId('logs-status'))));
      // Paused: lines are held and counted, not shown; resumed: shown.
      await page.getByTestId('logs-pause').click();
      const shown = await lines.count();
      await waitFor('lines held while paused', async () => /\d+ new/.test(await text(page.getByTestId('logs-pending'))));
      assert.equal(await lines.count(), shown, 'lines were added while paused');
      await page.getByTestId('logs-pause').click();
      await waitFor('held lines shown on resume', async () => (await lines.count()) > shown);
      // Filtered: only the lines with the text stay visible.
      await page.getByTestId('logs-filter').fill('tick 1');
      const visible = page.locator('[data-testid="log-line"]:visible');
      await waitFor('only matching lines', async () => {
        const n = await visible.count();
        if (!n) return false;
        for (const t of await visible.allTextContents()) if (!t.includes('tick 1')) return false;
        return true;
      });
      assert.ok((await lines.count()) > (await visible.count()), 'the filter hid nothing');
    });

    await step('audit-filtered-by-actor-and-action', async () => {
      await page.getByTestId('nav-audit').click();
      const rows = page.getByTestId('audit-row');
      await waitFor('audit entries', async () => (await rows.count()) >= 2);
      await page.getByTestId('audit-action').fill('module.deploy');
      await waitFor('only module.deploy entries', async () => {
        const actions = await rows.evaluateAll((els) => els.map((e) => e.dataset.action));
        return actions.length >= 1 && actions.every((a) => a.includes('module.deploy'));
      });
      await page.getByTestId('audit-action').fill('');
      await page.getByTestId('audit-actor').selectOption('admin');
      await waitFor('only admin entries', async () => {
        const actors = await rows.evaluateAll((els) => els.map((e) => e.dataset.actor));
        return actors.length >= 2 && actors.every((a) => a === 'admin');
      });
      assert.match(page.url(), /#\/audit\?actor=admin/);
      // The filtered view reloads as it was.
      await page.reload();
      await waitFor('the filter kept', async () => (await page.getByTestId('audit-actor').inputValue()) === 'admin');
    });

    assert.deepEqual(problems, [], `the pages had errors: ${problems.join('; ')}`);
  });
}

main().catch((e) => {
  console.error(e.stack || e.message);
  process.exit(1);
});
