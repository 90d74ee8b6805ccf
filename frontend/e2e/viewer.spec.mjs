// The viewer flow in a real browser (playwright-core driving Debian's chromium) against a running
// Glioscope gateway with a segmented study. Run by tests/frontend/test_viewer.py; by hand:
//   GLIOSCOPE_URL=http://127.0.0.1:8000 GLIOSCOPE_USERNAME=… GLIOSCOPE_PASSWORD=… \
//   GLIOSCOPE_STUDY_UID=… node e2e/viewer.spec.mjs
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const env = (name, fallback) => {
  const value = process.env[name] ?? fallback;
  if (value === undefined) throw new Error(`${name} is not set`);
  return value;
};
const url = env('GLIOSCOPE_URL');
const username = env('GLIOSCOPE_USERNAME');
const password = env('GLIOSCOPE_PASSWORD');
const studyUid = env('GLIOSCOPE_STUDY_UID');
const artifacts = env('GLIOSCOPE_ARTIFACTS', 'test-artifacts/frontend');
const executablePath = env('CHROMIUM_PATH', '/usr/bin/chromium');
mkdirSync(artifacts, { recursive: true });

function assert(condition, message) {
  if (!condition) throw new Error(`assertion failed: ${message}`);
}

// Count pixels of a screenshot (PNG) by colour class, decoded in the page (no PNG library needed).
async function colourCounts(page, png, colours) {
  return page.evaluate(
    async ({ b64, colours }) => {
      const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const bitmap = await createImageBitmap(new Blob([bytes], { type: 'image/png' }));
      const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
      const ctx = canvas.getContext('2d');
      ctx.drawImage(bitmap, 0, 0);
      const { data } = ctx.getImageData(0, 0, bitmap.width, bitmap.height);
      const counts = Object.fromEntries(Object.keys(colours).map((k) => [k, 0]));
      let coloured = 0;
      for (let p = 0; p < data.length; p += 4) {
        const [r, g, b] = [data[p], data[p + 1], data[p + 2]];
        if (Math.max(r, g, b) - Math.min(r, g, b) < 40) continue; // grey: the MR image
        coloured++;
        // the overlay is blended over grey: classify by the chroma direction of the segment colour
        let best = null;
        let bestScore = -Infinity;
        for (const [name, [cr, cg, cb]] of Object.entries(colours)) {
          const mean = (cr + cg + cb) / 3;
          const pm = (r + g + b) / 3;
          const v1 = [cr - mean, cg - mean, cb - mean];
          const v2 = [r - pm, g - pm, b - pm];
          const score = (v1[0] * v2[0] + v1[1] * v2[1] + v1[2] * v2[2]) / (Math.hypot(...v1) * Math.hypot(...v2) || 1);
          if (score > bestScore) [best, bestScore] = [name, score];
        }
        if (best && bestScore > 0.9) counts[best]++;
      }
      return { coloured, counts };
    },
    { b64: png.toString('base64'), colours },
  );
}

async function poll(page, predicate, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await page.evaluate(predicate)) return;
    await page.waitForTimeout(100);
  }
  throw new Error(`timed out waiting for ${what}`);
}

const browser = await chromium.launch({
  executablePath,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--no-first-run', '--enable-unsafe-swiftshader', '--use-angle=swiftshader',
  ],
});
const errors = [];
try {
  const page = await browser.newPage({ viewport: { width: 1500, height: 720 } });
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => m.type() === 'error' && errors.push(`console: ${m.text()}`));

  await page.goto(url);
  await page.fill('input[name=username]', username);
  await page.fill('input[name=password]', password);
  await page.click('button[type=submit]');
  const row = page.locator(`tr[data-study="${studyUid}"]`);
  await row.waitFor({ timeout: 30_000 });
  assert((await row.textContent()).includes('segmented'), 'the worklist shows the study as segmented');
  await page.screenshot({ path: join(artifacts, 'worklist.png') });

  await row.getByRole('link', { name: 'Open' }).click();
  await page.waitForSelector('.viewer[data-frame-ready="true"]', { timeout: 60_000 });
  await page.waitForSelector('.viewer[data-overlay-ready="true"]', { timeout: 60_000 });
  // (no waitForFunction: its predicate is eval'd, which the gateway's CSP forbids, rightly)
  await poll(page, () => window.__glioscopeTimings?.volumeLoadedMs !== undefined, 60_000, 'the T1c volume loaded');
  await page.waitForTimeout(500); // the last render after the final frames
  const timings = await page.evaluate(() => window.__glioscopeTimings);
  console.log(`TIMINGS first_mpr_frame_ms=${timings.firstFrameMs} overlay_ms=${timings.overlayMs} volume_loaded_ms=${timings.volumeLoadedMs}`);

  const segments = await page.$$eval('input[data-segment]', (inputs) =>
    inputs.map((i) => ({ number: i.dataset.segment, rgb: i.dataset.rgb.split(',').map(Number), label: i.getAttribute('aria-label') })),
  );
  assert(segments.length >= 2, `segments listed (${segments.length})`);
  const colours = Object.fromEntries(segments.map((s) => [s.number, s.rgb]));
  await page.screenshot({ path: join(artifacts, 'viewer.png') });

  const before = {};
  for (const id of ['axial', 'sagittal', 'coronal']) {
    const shot = await page.locator(`[data-viewport=${id}]`).screenshot({ path: join(artifacts, `${id}.png`) });
    before[id] = await colourCounts(page, shot, colours);
  }
  console.log(`OVERLAY ${JSON.stringify(before)}`);
  const axial = before.axial;
  assert(axial.coloured > 50, `tumour overlay pixels in the axial view (${axial.coloured})`);
  // the biggest segment in the axial view is hidden next, and its colour must disappear
  const [target, count] = Object.entries(axial.counts).sort((a, b) => b[1] - a[1])[0];
  assert(count > 50, `pixels of segment ${target} (${count})`);

  await page.click(`input[data-segment="${target}"]`);
  await page.waitForTimeout(800);
  const hiddenShot = await page.locator('[data-viewport=axial]').screenshot({ path: join(artifacts, `axial-segment-${target}-hidden.png`) });
  const after = await colourCounts(page, hiddenShot, colours);
  console.log(`HIDDEN segment=${target} ${JSON.stringify(after)}`);
  assert(after.counts[target] < Math.max(5, count * 0.02), `segment ${target} hidden: ${after.counts[target]} pixels left of ${count}`);
  assert(after.coloured < axial.coloured, 'fewer coloured pixels once a segment is hidden');
  await page.click(`input[data-segment="${target}"]`);

  // the sequence switch loads another series into the three viewports
  await page.getByRole('button', { name: 'FLAIR', exact: true }).click();
  await poll(page, () => document.querySelector('.viewer-toolbar .muted') === null, 60_000, 'the FLAIR volume loaded');
  await page.screenshot({ path: join(artifacts, 'viewer-flair.png') });

  const serious = errors.filter((e) => !/favicon|DevTools/.test(e));
  writeFileSync(join(artifacts, 'browser-errors.txt'), errors.join('\n'));
  assert(serious.length === 0, `no page errors:\n${serious.join('\n')}`);
  console.log('VIEWER FLOW OK');
} catch (error) {
  writeFileSync(join(artifacts, 'browser-errors.txt'), errors.join('\n'));
  console.log(`BROWSER ERRORS:\n${errors.join('\n')}`);
  const pages = browser.contexts().flatMap((c) => c.pages());
  if (pages[0]) await pages[0].screenshot({ path: join(artifacts, 'failure.png') }).catch(() => {});
  throw error;
} finally {
  await browser.close();
}
