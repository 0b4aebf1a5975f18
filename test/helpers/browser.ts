/**
 * A headless Chromium for the tests of the service map page: Debian's
 * `chromium` package (scripts/setup.sh installs it) driven by
 * playwright-core, which brings no browser of its own. Each launch gets a
 * fresh profile directory, removed on close.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';

/** Where Debian's chromium package puts the browser. */
export const CHROMIUM = '/usr/bin/chromium';

/** Whether {@link CHROMIUM} is installed. */
export function hasChromium(): boolean {
  return fs.existsSync(CHROMIUM);
}

/** A browser with one page, the page's console errors and uncaught exceptions, and a close that removes its profile. */
export interface TestBrowser {
  context: BrowserContext;
  page: Page;
  /** `console.error` messages (Chromium reports failed loads there too) and uncaught page errors, in order. */
  errors: string[];
  /** Close the browser and remove its profile directory; safe to call twice. */
  close(): Promise<void>;
}

/**
 * Start headless Chromium with a fresh profile (no sandbox: the tests run
 * as root; no GPU, QUIC, background networking, component updates or sync:
 * it reaches no host but the test's).
 * @throws Error from playwright-core when the browser does not start (its profile is removed first)
 */
export async function launchChromium(): Promise<TestBrowser> {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'xlb-chromium-'));
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1400, height: 900 },
    });
  } catch (e) {
    fs.rmSync(profile, { recursive: true, force: true });
    throw e;
  }
  const page = context.pages()[0] ?? (await context.newPage());
  const errors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console.error: ${m.text()}`);
  });
  page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
  let closed = false;
  return {
    context,
    page,
    errors,
    async close() {
      if (closed) return;
      closed = true;
      try {
        await context.close();
      } finally {
        fs.rmSync(profile, { recursive: true, force: true });
      }
    },
  };
}
