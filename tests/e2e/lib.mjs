// What the dashboard's browser tests share: their inputs, waiting, a headless Debian
// chromium with a step runner that screenshots every step, and logging in.

import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

// CommonJS resolution, so NODE_PATH is honoured (ES module imports ignore it).
const { chromium } = createRequire(import.meta.url)('playwright-core');

export const WAIT_MS = 30000; // per wait: CI is a loaded 2-core machine

export function env(name, fallback) {
  const v = process.env[name] ?? fallback;
  if (v === undefined || v === '') {
    console.error(`dashboard e2e: ${name} is not set`);
    process.exit(2);
  }
  return v;
}

export const byAttr = (testid, attr, value) => `[data-testid="${testid}"][${attr}=${JSON.stringify(value)}]`;

// Polls fn until it returns a truthy value; fails with `what` and the last value seen.
export async function waitFor(what, fn, timeoutMs = WAIT_MS) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = `error: ${e.message.split('\n')[0]}`;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000}s waiting for ${what} (last: ${JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

export const text = (locator) => locator.textContent().then((t) => t || '');

// Runs `body({page, step, shot, problems})` in a fresh headless chromium; `problems` collects
// uncaught page errors and CSP violations (a page must have none). Screenshots go to
// `artifacts`/NN-step.png.
export async function withBrowser({ chromiumPath, artifacts }, body) {
  fs.mkdirSync(artifacts, { recursive: true });
  const browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const problems = [];
  let stepNo = 0;
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    page.setDefaultTimeout(WAIT_MS);
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error' && /Content Security Policy/i.test(m.text())) problems.push(`CSP: ${m.text()}`);
    });
    const shot = (name, fullPage = true) =>
      page.screenshot({ path: path.join(artifacts, `${String(stepNo).padStart(2, '0')}-${name}.png`), fullPage });
    async function step(name, fn) {
      stepNo++;
      try {
        await fn();
      } catch (e) {
        await shot(`${name}-FAILED`).catch(() => {});
        e.message = `step ${stepNo} (${name}) failed: ${e.message}`;
        throw e;
      }
      await shot(name);
      console.log(`ok ${stepNo} - ${name}`);
    }
    await body({ page, step, shot, problems, steps: () => stepNo });
  } finally {
    await browser.close();
  }
}

export async function login(page, token) {
  await page.getByTestId('token-input').fill(token);
  await page.getByTestId('login-button').click();
}
