// The brain mask outline in a real browser (playwright-core + Debian's chromium) against a running gateway
// with a segmented study whose job lists a brain mask (tests/frontend/test_brain_outline.py). Env as viewer.spec.mjs.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { assert, CHROMIUM_ARGS, colourCounts, env } from './browser-helpers.mjs';

const url = env('GLIOSCOPE_URL');
const studyUid = env('GLIOSCOPE_STUDY_UID');
const artifacts = env('GLIOSCOPE_ARTIFACTS', 'test-artifacts/frontend');
mkdirSync(artifacts, { recursive: true });
const CYAN = [0, 200, 255];

const browser = await chromium.launch({ executablePath: env('CHROMIUM_PATH', '/usr/bin/chromium'), args: CHROMIUM_ARGS });
const errors = [];
try {
  const page = await browser.newPage({ viewport: { width: 1500, height: 720 } });
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => m.type() === 'error' && errors.push(`console: ${m.text()}`));
  await page.goto(url);
  await page.fill('input[name=username]', env('GLIOSCOPE_USERNAME'));
  await page.fill('input[name=password]', env('GLIOSCOPE_PASSWORD'));
  await page.click('button[type=submit]');
  const row = page.locator(`tr[data-study="${studyUid}"]`);
  await row.waitFor({ timeout: 30_000 });
  await row.getByRole('link', { name: 'Open' }).click();
  await page.waitForSelector('.viewer[data-overlay-ready="true"]', { timeout: 90_000 });
  await page.waitForTimeout(1000);
  const segments = await page.$$eval('input[data-segment]', (inputs) => inputs.map((i) => [i.dataset.segment, i.dataset.rgb.split(',').map(Number)]));
  const colours = { brain: CYAN, ...Object.fromEntries(segments) };
  const toggle = page.getByLabel('Brain mask outline');
  assert((await toggle.count()) === 1, 'the toggle is shown for a study with a brain mask');
  const counts = async (name) => {
    const out = {};
    for (const id of ['axial', 'sagittal', 'coronal']) {
      const shot = await page.locator(`[data-viewport=${id}]`).screenshot({ path: join(artifacts, `${id}-${name}.png`) });
      out[id] = (await colourCounts(page, shot, colours)).counts;
    }
    return out;
  };
  const before = await counts('brain-off');
  await toggle.check();
  await page.waitForTimeout(2500);
  assert(await toggle.isChecked(), 'checked');
  const on = await counts('brain-on');
  await page.screenshot({ path: join(artifacts, 'viewer-brain-outline.png') });
  // with the outline on, the brush still paints the tumour (the brain mask is never the active segmentation)
  const [paintSegment] = Object.entries(on.axial).filter(([n]) => n !== 'brain').sort((a, b) => a[1] - b[1])[0];
  await page.click('button[data-mode=brush]');
  await page.click(`button[data-paint-segment="${paintSegment}"]`);
  const box = await page.locator('[data-viewport=axial]').boundingBox();
  const [cx, cy] = [box.x + box.width / 2, box.y + box.height / 2];
  await page.mouse.move(cx - box.width * 0.25, cy + box.height * 0.3);
  await page.mouse.down();
  await page.mouse.move(cx + box.width * 0.25, cy + box.height * 0.3, { steps: 20 });
  await page.mouse.up();
  await page.click('button[data-mode=navigate]');
  await page.waitForTimeout(800);
  const paintedShot = await page.locator('[data-viewport=axial]').screenshot({ path: join(artifacts, 'axial-brain-on-painted.png') });
  const painted = (await colourCounts(page, paintedShot, colours)).counts;
  console.log(`PAINTED segment=${paintSegment} ${JSON.stringify(painted)}`);
  assert(painted[paintSegment] > on.axial[paintSegment] + 50, `the stroke paints segment ${paintSegment} (${on.axial[paintSegment]} -> ${painted[paintSegment]})`);
  assert(painted.brain < on.axial.brain + 40, `and not the brain mask (${on.axial.brain} -> ${painted.brain})`);
  await toggle.uncheck();
  await page.waitForTimeout(1500);
  const off = await counts('brain-off-again');
  console.log(`BRAIN_OUTLINE ${JSON.stringify({ before, on, off })}`);
  for (const id of ['axial', 'sagittal', 'coronal']) {
    assert(on[id].brain > before[id].brain + 40, `${id}: cyan outline pixels appear (${before[id].brain} -> ${on[id].brain})`);
    assert(off[id].brain < before[id].brain + 20, `${id}: and go when unchecked (${off[id].brain})`);
    // an outline, not a fill: the tumour's colours stay visible inside it
    for (const [n] of segments) assert(on[id][n] > 0.5 * before[id][n] - 5, `${id}: segment ${n} still visible (${before[id][n]} -> ${on[id][n]})`);
  }
  assert(errors.length === 0, `no page errors: ${errors.join('; ')}`);
  console.log('BRAIN OUTLINE OK');
} finally {
  await browser.close();
}
