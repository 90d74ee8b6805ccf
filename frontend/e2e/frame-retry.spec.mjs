// A frame request that fails (issue 21, item 2), in a real browser (playwright-core + Debian's chromium)
// against a running gateway with a segmented study; run by tests/frontend/test_frames_and_worklist.py.
// `page.route` answers 503 for one T1c frame: (1) the first two times only — the viewer retries, the
// image loads, no page error, no notice; (2) always — after four tries the viewer names the missing slice
// (series and instance number), still no page error. Env as viewer.spec.mjs, plus GLIOSCOPE_FRAME_SOP
// (the frame's SOP Instance UID), GLIOSCOPE_FRAME_INSTANCE and GLIOSCOPE_FRAME_SERIES_NUMBER.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { assert, CHROMIUM_ARGS, env, signIn } from './browser-helpers.mjs';

const url = env('GLIOSCOPE_URL');
const studyUid = env('GLIOSCOPE_STUDY_UID');
const sop = env('GLIOSCOPE_FRAME_SOP');
const instance = env('GLIOSCOPE_FRAME_INSTANCE');
const seriesNumber = env('GLIOSCOPE_FRAME_SERIES_NUMBER', '');
const artifacts = env('GLIOSCOPE_ARTIFACTS', 'test-artifacts/frontend');
mkdirSync(artifacts, { recursive: true });

const browser = await chromium.launch({ executablePath: env('CHROMIUM_PATH', '/usr/bin/chromium'), args: CHROMIUM_ARGS });

// One page with the frame failing `failures` times (Infinity: always); what it saw.
async function openWithFailingFrame(failures, name) {
  const page = await browser.newPage({ viewport: { width: 1500, height: 760 } });
  const pageErrors = [];
  const consoleErrors = [];
  page.on('pageerror', (e) => pageErrors.push(e.message));
  // the browser's own "Failed to load resource: … 503" lines are the failures we cause, not the page's
  page.on('console', (m) => m.type() === 'error' && !m.text().startsWith('Failed to load resource') && consoleErrors.push(m.text()));
  const hits = [];
  await page.route(`**/instances/${sop}/frames/**`, async (route) => {
    hits.push(Date.now());
    if (hits.length <= failures) await route.fulfill({ status: 503, contentType: 'application/json', body: '{"detail":"the image store is unavailable"}' });
    else await route.continue();
  });
  await signIn(page, url, env('GLIOSCOPE_USERNAME'), env('GLIOSCOPE_PASSWORD'));
  const row = page.locator(`tr[data-study="${studyUid}"]`);
  await row.waitFor({ timeout: 30_000 });
  await row.getByRole('link', { name: 'Open' }).click();
  await page.waitForSelector('.viewer[data-frame-ready="true"]', { timeout: 60_000 });
  await page.waitForSelector('.viewer[data-overlay-ready="true"]', { timeout: 90_000 });
  return { page, hits, pageErrors, consoleErrors, name };
}

try {
  // (1) two 503s, then the frame: retried 250 and 500 ms later, loaded on the third try
  {
    const { page, hits, pageErrors, consoleErrors } = await openWithFailingFrame(2, 'recovers');
    const until = Date.now() + 20_000;
    while (hits.length < 3 && Date.now() < until) await page.waitForTimeout(200);
    await page.waitForTimeout(1500);
    await page.screenshot({ path: join(artifacts, 'frame-retry-recovered.png') });
    console.log(`RECOVERED hits=${hits.length} gaps_ms=${hits.slice(1).map((t, i) => t - hits[i]).join(',')}`);
    assert(hits.length === 3, `the frame was asked for three times (${hits.length})`);
    assert(hits[1] - hits[0] >= 200 && hits[2] - hits[1] >= 450, `with backoff between the tries (${hits.slice(1).map((t, i) => t - hits[i])})`);
    assert((await page.locator('[data-missing-frames]').count()) === 0, 'no missing-slices notice');
    assert(pageErrors.length === 0, `no page errors: ${pageErrors.join('; ')}`);
    assert(consoleErrors.length === 0, `no console errors: ${consoleErrors.join('; ')}`);
    await page.close();
  }
  // (2) always 503: four tries, then the notice names the slice
  {
    const { page, hits, pageErrors, consoleErrors } = await openWithFailingFrame(Infinity, 'fails');
    const notice = page.locator('[data-missing-frames]');
    await notice.waitFor({ timeout: 30_000 });
    const text = await notice.innerText();
    await page.waitForTimeout(500);
    await page.screenshot({ path: join(artifacts, 'frame-retry-missing-slice.png') });
    console.log(`MISSING hits=${hits.length} notice=${JSON.stringify(text)}`);
    assert(hits.length === 4, `four tries (${hits.length})`);
    assert(text.includes('T1c') && new RegExp(`instances? (\\d+, )*${instance}(?!\\d)`).test(text), `the notice names T1c instance ${instance}: ${text}`);
    if (seriesNumber) assert(text.includes(`series ${seriesNumber}`), `and its series number ${seriesNumber}: ${text}`);
    assert(pageErrors.length === 0, `no page errors: ${pageErrors.join('; ')}`);
    console.log(`CONSOLE_ERRORS ${JSON.stringify(consoleErrors)}`);
    await page.close();
  }
  console.log('FRAME RETRY OK');
} finally {
  await browser.close();
}
