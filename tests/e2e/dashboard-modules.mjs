// The dashboard drawing real PM2 modules as Keymetrics did, in a real (headless) Chromium.
// The modules replay what pm2-elasticsearch, pm2-server-monit and pm2-sysmonit sent on their
// channel (tests/integration/fixtures/recorded-modules). Two phases (HERD_PHASE):
//   online:  themes, blocks, HTML replies drawn safely, issues grouped and cleared, a
//            letter mark for a logo that does not load;
//   offline: (the agent stopped) no module reads "online", nothing can be sent to it.
// Run by dashboard_test (DashboardTest.RecordedModules...). Exits 0, or 1 naming the step.

import assert from 'node:assert/strict';
import os from 'node:os';
import path from 'node:path';
import { env, byAttr, waitFor, text, withBrowser, login } from './lib.mjs';

const URL_ = env('HERD_URL').replace(/\/$/, '');
const TOKEN = env('HERD_TOKEN');
const HOST_ID = env('HERD_HOST_ID');
const PHASE = env('HERD_PHASE');
const ARTIFACTS = env('HERD_ARTIFACTS', path.join(os.tmpdir(), 'herd-dashboard-modules'));
const CHROMIUM = env('CHROMIUM', '/usr/bin/chromium');

async function main() {
  await withBrowser({ chromiumPath: CHROMIUM, artifacts: path.join(ARTIFACTS, PHASE) }, async ({ page, step, problems, steps }) => {
    const widget = (name) => page.locator(byAttr('module-widget', 'data-module', name));
    const cssVar = (locator, name) => locator.evaluate((el, n) => el.style.getPropertyValue(n), name);

    await step('open-host', async () => {
      await page.goto(`${URL_}/#/hosts/${encodeURIComponent(HOST_ID)}`);
      await login(page, TOKEN);
      for (const m of ['rec-elastic', 'rec-monit', 'rec-sysmonit']) await widget(m).waitFor();
    });

    if (PHASE === 'offline') {
      await step('offline-host', async () => {
        for (const m of ['rec-elastic', 'rec-monit', 'rec-sysmonit']) {
          const w = widget(m);
          await waitFor(`${m} to say its host is offline`, async () => /host offline/.test(await text(w.locator('.badge').first())));
          assert.ok(await w.getByTestId('restart-button').isDisabled(), `${m}: Restart is enabled on an offline host`);
          assert.ok(await w.getByTestId('configure-button').isDisabled(), `${m}: Configure is enabled on an offline host`);
          assert.match(await w.getAttribute('class'), /\bstale\b/, `${m}: its values are not marked as last known`);
        }
      });
    } else {
      await step('theme-of-pm2-elasticsearch', async () => {
        // @pm2/io sent eight colours (its four defaults first): the module's are the last four.
        const w = widget('rec-elastic');
        await waitFor('the theme to apply', async () => (await cssVar(w, '--w-main')) === '#39bdb1');
        assert.equal(await cssVar(w, '--w-border'), 'white');
        assert.match(await w.getAttribute('class'), /\bthemed\b/);
      });

      await step('blocks-of-a-module-without-widget', async () => {
        // pm2-sysmonit (tx2) announces no widget: everything shows, as PM2 did.
        const w = widget('rec-sysmonit');
        await waitFor('its probes', async () => /CPU Usage/.test(await text(w)));
        assert.ok(await w.locator(byAttr('action-button', 'data-action', 'info')).isVisible(), 'actions hidden');
        assert.ok(await w.getByTestId('cpu-chart').isVisible(), 'cpu chart hidden');
      });

      await step('actions-of-pm2-server-monit-and-html-replies', async () => {
        // el.actions true, block.actions false: the actions are reachable.
        const w = widget('rec-monit');
        const button = w.locator(byAttr('action-button', 'data-action', 'top cpu consuming'));
        await button.waitFor();
        await button.click();
        const reply = w.getByTestId('action-reply');
        const shown = await waitFor('the reply', async () => {
          const t = await text(reply);
          return t && !t.startsWith('running') ? t : null;
        });
        // <br /> became line breaks; the markup it carried is text or gone, never live.
        assert.doesNotMatch(shown, /<br/);
        assert.match(shown, /PID %CPU COMMAND\n\s+1\s+0\.1 init\n/);
        assert.equal(await reply.locator('script, img, br').count(), 0);
        assert.equal(await page.evaluate(() => window.__xss), undefined);
      });

      await step('logo-that-does-not-load', async () => {
        // The machine cannot reach the module's logo host: a letter mark, not a broken image.
        const w = widget('rec-monit');
        await waitFor('the letter mark', async () => (await w.getByTestId('widget-letter').count()) === 1);
        assert.equal(await text(w.getByTestId('widget-letter')), 'R');
        assert.equal(await w.getByTestId('widget-logo').locator('visible=true').count(), 0);
      });

      await step('issues-grouped-and-cleared', async () => {
        const w = widget('rec-elastic');
        const issue = w.getByTestId('issue');
        await waitFor('one issue group of 4', async () => (await issue.count()) === 1 && (await issue.getAttribute('data-count')) === '4');
        assert.match(await text(w.getByTestId('issue-count')), /×4/);
        await w.getByTestId('issues-clear').click();
        await waitFor('the issues to be gone', async () => (await issue.count()) === 0);
        // And gone on the host too: the next inventory does not bring them back.
        await page.waitForTimeout(2500);
        assert.equal(await issue.count(), 0);
      });
    }

    assert.deepEqual(problems, [], 'the page raised errors');
    console.log(`dashboard modules e2e (${PHASE}): all ${steps()} steps passed`);
  });
}

main().catch((e) => {
  console.error(`dashboard modules e2e FAILED: ${e.message}`);
  process.exit(1);
});
