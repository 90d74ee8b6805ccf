// The viewer flow in a real browser (playwright-core driving Debian's chromium) against a running
// Glioscope gateway with a segmented study. Run by tests/frontend/test_viewer.py; by hand, with the
// gateway serving the e2e build (`npm run build:e2e`, GLIOSCOPE_FRONTEND_DIST=<repo>/frontend/dist-e2e:
// the production bundle has no `window.__glioscopeTimings`) or `npm run dev`:
//   GLIOSCOPE_URL=http://127.0.0.1:8000 GLIOSCOPE_USERNAME=… GLIOSCOPE_PASSWORD=… \
//   GLIOSCOPE_STUDY_UID=… node e2e/viewer.spec.mjs
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { assert, CHROMIUM_ARGS, colourCounts, env } from './browser-helpers.mjs';

const url = env('GLIOSCOPE_URL');
const username = env('GLIOSCOPE_USERNAME');
const password = env('GLIOSCOPE_PASSWORD');
const studyUid = env('GLIOSCOPE_STUDY_UID');
const artifacts = env('GLIOSCOPE_ARTIFACTS', 'test-artifacts/frontend');
const executablePath = env('CHROMIUM_PATH', '/usr/bin/chromium');
mkdirSync(artifacts, { recursive: true });

// The rendered image of a viewport (its Cornerstone canvas, without the SVG annotation layer) kept
// in the page under `key`, and the share of its pixels that changed since (any channel by > 24).
async function keepCanvas(page, viewport, key) {
  await page.evaluate(({ viewport, key }) => {
    const canvas = document.querySelector(`[data-viewport=${viewport}] canvas`);
    const copy = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
    (window.__kept ??= {})[key] = copy;
  }, { viewport, key });
}
async function changedSince(page, viewport, key) {
  return page.evaluate(({ viewport, key }) => {
    const canvas = document.querySelector(`[data-viewport=${viewport}] canvas`);
    const now = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    const then = window.__kept[key].data;
    if (then.length !== now.length) return 1;
    let changed = 0;
    for (let p = 0; p < now.length; p += 4) {
      if (Math.abs(now[p] - then[p]) > 24 || Math.abs(now[p + 1] - then[p + 1]) > 24 || Math.abs(now[p + 2] - then[p + 2]) > 24) changed++;
    }
    return changed / (now.length / 4);
  }, { viewport, key });
}

// The text of the first match, or null at once when there is none (a locator's textContent() would
// wait for its 30 s timeout).
async function textIfAny(page, selector) {
  const found = page.locator(selector);
  return (await found.count()) ? found.first().textContent() : null;
}

async function poll(page, predicate, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const started = Date.now();
    const ok = await page.evaluate(predicate);
    if (Date.now() - started > 2000) console.log(`POLL ${what}: one check took ${Date.now() - started} ms`);
    if (ok) return;
    await page.waitForTimeout(100);
  }
  throw new Error(`timed out waiting for ${what}`);
}

const browser = await chromium.launch({ executablePath, args: CHROMIUM_ARGS });
const errors = [];
const failedResponses = []; // status ≥ 400: which URL a console "Failed to load resource" was about
try {
  const page = await browser.newPage({ viewport: { width: 1500, height: 720 } });
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => m.type() === 'error' && errors.push(`console: ${m.text()}`));
  page.on('response', (r) => r.status() >= 400 && failedResponses.push(`${r.status()} ${new URL(r.url()).pathname}`));

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
  assert(timings.overlayMs >= timings.firstFrameMs || timings.overlayMs > 0, 'overlay timing recorded');

  // The measurements panel as the clinician reads it (the test compares it with the delivered SEG's figures).
  await page.waitForSelector('section.measurements th', { timeout: 30_000 });
  const panel = await page.$$eval('section.measurements tr', (rows) =>
    rows.map((r) => [r.querySelector('th')?.textContent ?? '', r.querySelector('td')?.textContent ?? '']),
  );
  console.log(`PANEL ${JSON.stringify(panel)}`);

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

  // per-segment opacity: 0 → the segment's fill is gone (its 1-pixel outline stays), 1 → back, and
  // brighter than the default; the other segments keep theirs
  await page.waitForTimeout(500);
  const opacityOf = async (value, name) => {
    await page.fill(`input[data-opacity-segment="${target}"]`, value);
    await page.waitForTimeout(600);
    return colourCounts(page, await page.locator('[data-viewport=axial]').screenshot({ path: join(artifacts, name) }), colours);
  };
  const transparent = await opacityOf('0', `axial-segment-${target}-opacity-0.png`);
  const opaque = await opacityOf('1', `axial-segment-${target}-opacity-1.png`);
  const restored = await opacityOf('0.55', `axial-segment-${target}-opacity-default.png`);
  console.log(`OPACITY segment=${target} default=${count} 0=${transparent.counts[target]} 1=${opaque.counts[target]} back=${restored.counts[target]} ${JSON.stringify({ transparent, opaque })}`);
  assert(transparent.counts[target] < count * 0.5, `segment ${target} at opacity 0: its fill gone (${count} → ${transparent.counts[target]} pixels, the outline stays)`);
  assert(opaque.counts[target] >= count * 0.9, `segment ${target} at opacity 1: its pixels back (${count} → ${opaque.counts[target]})`);
  assert(Math.abs(restored.counts[target] - count) < Math.max(30, count * 0.05), `segment ${target} back at the default opacity (${count} → ${restored.counts[target]})`);
  for (const other of Object.keys(colours).filter((k) => k !== target && axial.counts[k] > 50))
    assert(transparent.counts[other] > axial.counts[other] * 0.8, `segment ${other} keeps its opacity (${axial.counts[other]} → ${transparent.counts[other]})`);

  await page.waitForTimeout(500);

  // the 3D view: the tumour surface, built after the overlay
  await page.waitForSelector('.viewer[data-surface="ready"]', { timeout: 60_000 });
  const triangles = Number(await page.getAttribute('[data-viewport=surface3d]', 'data-triangles'));
  await page.waitForTimeout(500);
  const surfaceShot = await page.locator('[data-viewport=surface3d]').screenshot({ path: join(artifacts, 'surface3d.png') });
  const surfaceColours = await colourCounts(page, surfaceShot, colours);
  const surfaceMs = await page.evaluate(() => window.__glioscopeTimings.surfaceMs);
  console.log(`SURFACE triangles=${triangles} surface_ms=${surfaceMs} ${JSON.stringify(surfaceColours)}`);
  assert(triangles > 100, `a tumour surface mesh (${triangles} triangles)`);
  assert(surfaceColours.coloured > 200, `coloured surface pixels in the 3D view (${surfaceColours.coloured})`);
  await page.click(`input[data-segment="${target}"]`); // hiding a segment hides its surface too
  await page.waitForTimeout(500);
  const surfaceHidden = await colourCounts(page, await page.locator('[data-viewport=surface3d]').screenshot({ path: join(artifacts, `surface3d-segment-${target}-hidden.png`) }), colours);
  console.log(`SURFACE_HIDDEN segment=${target} ${JSON.stringify(surfaceHidden)}`);
  assert(surfaceHidden.counts[target] < surfaceColours.counts[target] * 0.2, `segment ${target}'s surface hidden (${surfaceColours.counts[target]} → ${surfaceHidden.counts[target]})`);
  await page.click(`input[data-segment="${target}"]`);

  // paint: a brush stroke of the smallest segment through the tumour in the axial view
  const [paintSegment] = Object.entries(axial.counts).sort((a, b) => a[1] - b[1])[0];
  await page.click('button[data-mode=brush]');
  await page.click(`button[data-paint-segment="${paintSegment}"]`);
  await page.fill('input[aria-label="Brush radius"]', '8');
  const box = await page.locator('[data-viewport=axial]').boundingBox();
  const [cx, cy] = [box.x + box.width / 2, box.y + box.height / 2];
  const stroke = async () => {
    await page.mouse.move(cx - box.width * 0.25, cy + box.height * 0.05);
    await page.mouse.down();
    await page.mouse.move(cx + box.width * 0.25, cy + box.height * 0.05, { steps: 20 });
    await page.mouse.up();
    await poll(page, () => Number(document.querySelector('.viewer')?.dataset.strokes) > 0, 10_000, 'the stroke recorded');
  };
  // a first stroke, undone
  await stroke();
  await page.getByRole('button', { name: 'Undo' }).click();
  await poll(page, () => document.querySelector('.viewer')?.dataset.strokes === '0', 10_000, 'the stroke undone');
  await page.click('button[data-mode=navigate]'); // (the brush cursor is drawn in the segment's colour)
  await page.waitForTimeout(500);
  const undone = await colourCounts(page, await page.locator('[data-viewport=axial]').screenshot(), colours);
  console.log(`UNDONE ${JSON.stringify(undone)}`);
  assert(Math.abs(undone.counts[paintSegment] - axial.counts[paintSegment]) < 30, `undo restores segment ${paintSegment} (${axial.counts[paintSegment]} → ${undone.counts[paintSegment]})`);
  await page.click('button[data-mode=brush]');
  await stroke();
  await page.click('button[data-mode=navigate]');
  await page.waitForTimeout(500);
  const paintedShot = await page.locator('[data-viewport=axial]').screenshot({ path: join(artifacts, 'axial-painted.png') });
  const painted = await colourCounts(page, paintedShot, colours);
  console.log(`PAINTED segment=${paintSegment} ${JSON.stringify(painted)}`);
  assert(painted.counts[paintSegment] > axial.counts[paintSegment] + 50, `the stroke shows (${axial.counts[paintSegment]} → ${painted.counts[paintSegment]} pixels of segment ${paintSegment})`);

  // the save step is mandatory: the gateway stores edited segmentations (POST …/segmentation/versions)
  {
    const before = Number(await page.getAttribute('.viewer', 'data-shown-version'));
    assert(before >= 1, `a shown version (${before})`);
    const clickAt = Date.now();
    await page.click('button[data-action=save-segmentation]');
    await poll(page, () => {
      const v = document.querySelector('.viewer');
      return (v && Number(v.dataset.shownVersion) > 1 && !document.querySelector('[data-saving]')) || !!document.querySelector('.editing .error');
    }, 180_000, 'the new segmentation version');
    const saveError = await textIfAny(page, '.editing .error');
    assert(!saveError, `saving failed: ${saveError}`);
    const after = Number(await page.getAttribute('.viewer', 'data-shown-version'));
    const versions = await page.$$eval('.versions li[data-version]', (items) => items.map((li) => ({ version: Number(li.dataset.version), voxels: JSON.parse(li.dataset.voxels) })));
    const saveSteps = await page.evaluate(() => window.__glioscopeTimings.save);
    const { startedAt, endedAt, ...steps } = saveSteps;
    console.log(`SAVED version=${after} save_ms=${endedAt - clickAt} (click to the new version shown; steps ${JSON.stringify(steps)}, started ${startedAt - clickAt} ms after the click); versions ${JSON.stringify(versions)}`);
    assert(after === before + 1, `the saved version follows the base (${before} → ${after})`);
    const [newest, base] = [versions.find((v) => v.version === after), versions.find((v) => v.version === before)];
    assert(newest && base && newest.voxels[paintSegment] !== base.voxels[paintSegment], `voxel count of segment ${paintSegment} changed`);
    await page.waitForTimeout(500);
    const reloaded = await colourCounts(page, await page.locator('[data-viewport=axial]').screenshot({ path: join(artifacts, 'axial-saved-version.png') }), colours);
    assert(reloaded.counts[paintSegment] > axial.counts[paintSegment] + 50, 'the reloaded version shows the stroke');
    console.log(`SAVED_VERSION ${after}`);
  }
  await page.screenshot({ path: join(artifacts, 'viewer-edited.png') });

  // the report: edit a section, attach a screenshot of the viewports, download the PDF, sign
  await page.getByRole('button', { name: 'Report', exact: true }).click();
  await page.waitForSelector('section.report[data-report-status]', { timeout: 30_000 });
  const reportVersion = Number(await page.getAttribute('section.report', 'data-report-version'));
  const findings = page.locator('textarea[name=findings]');
  await findings.fill(`${await findings.inputValue()}\nReviewed in the viewer (browser test).`);
  await page.click('button[data-action=save-report]');
  await poll(page, () => !!document.querySelector('[data-report-notice]') || !!document.querySelector('section.report .error'), 30_000, 'the saved report');
  assert(Number(await page.getAttribute('section.report', 'data-report-version')) > reportVersion, 'a new report version');
  await page.click('section.report details summary');
  await page.getByRole('button', { name: 'Changes since v1' }).click();
  await page.waitForSelector('pre.diff', { timeout: 30_000 });
  assert((await page.locator('pre.diff').first().textContent()).includes('+Reviewed in the viewer'), 'the diff shows the added line');
  await page.click('button[data-action=add-screenshot]');
  await poll(page, () => !!document.querySelector('[data-screenshots]') || !!document.querySelector('section.report .error'), 30_000, 'the screenshot attached');
  assert(await page.locator('[data-screenshots]').count() === 1, `screenshot attached: ${await textIfAny(page, 'section.report .error')}`);
  await page.screenshot({ path: join(artifacts, 'report-panel.png') });
  const [download] = await Promise.all([page.waitForEvent('download', { timeout: 60_000 }), page.click('button[data-action=download-pdf]')]);
  const pdfPath = join(artifacts, 'report.pdf');
  await download.saveAs(pdfPath);
  const pdf = readFileSync(pdfPath);
  console.log(`PDF ${pdf.length} bytes`);
  assert(pdf.subarray(0, 5).toString() === '%PDF-' && pdf.length > 10_000, 'a PDF downloaded');
  await page.click('button[data-action=sign-report]');
  await page.waitForSelector('section.report[data-report-status="final"]', { timeout: 60_000 });
  assert(await page.locator('textarea[name=findings][readonly]').count() === 1, 'a signed report is read-only');
  await page.fill('textarea[name=addendum]', 'Addendum from the browser test.');
  await page.getByRole('button', { name: 'Add addendum' }).click();
  await page.waitForSelector('[aria-label=Addenda]', { timeout: 60_000 });
  await page.screenshot({ path: join(artifacts, 'report-signed.png') });
  await page.getByRole('button', { name: 'Segments', exact: true }).click();

  // crosshairs: a drag in the axial view moves the sagittal and coronal slices (their rendered images
  // change); the axial image itself stays; back to window/level, the reference lines go
  await page.click('button[data-mode=crosshairs]');
  await page.waitForTimeout(800);
  const crossLines = await page.locator('[data-viewport=sagittal] svg line').count();
  for (const id of ['axial', 'sagittal', 'coronal']) await keepCanvas(page, id, `cross-${id}`);
  const axialBox = await page.locator('[data-viewport=axial]').boundingBox();
  const [ax, ay] = [axialBox.x + axialBox.width / 2, axialBox.y + axialBox.height / 2];
  // (the crosshairs start at the tumour's centre, up and right of the view's centre: end away from it)
  await page.mouse.move(ax + axialBox.width * 0.1, ay - axialBox.height * 0.2);
  await page.mouse.down();
  await page.mouse.move(ax - axialBox.width * 0.15, ay + axialBox.height * 0.15, { steps: 15 });
  await page.mouse.up();
  await page.waitForTimeout(800);
  await page.screenshot({ path: join(artifacts, 'viewer-crosshairs.png') });
  const moved = {};
  for (const id of ['axial', 'sagittal', 'coronal']) moved[id] = await changedSince(page, id, `cross-${id}`);
  console.log(`CROSSHAIRS lines_in_sagittal=${crossLines} changed=${JSON.stringify(moved)}`);
  assert(crossLines > 0, 'the crosshairs draw reference lines in the sagittal view');
  assert(moved.sagittal > 0.01 && moved.coronal > 0.01, `the sagittal and coronal images follow the drag (${JSON.stringify(moved)})`);
  assert(moved.axial < moved.sagittal && moved.axial < moved.coronal, `the axial image stays (${JSON.stringify(moved)})`);
  await page.click('button[data-mode=crosshairs]');
  await page.waitForTimeout(500);
  const linesLeft = await page.locator('[data-viewport=sagittal] svg line').count();
  assert(linesLeft === 0, `no reference lines once the crosshairs are off (${linesLeft})`);
  // the brush still paints after the crosshairs (one primary-button tool at a time), then undone
  const beforeBrush = await colourCounts(page, await page.locator('[data-viewport=axial]').screenshot(), colours);
  await page.click('button[data-mode=brush]');
  await page.mouse.move(cx - box.width * 0.25, cy - box.height * 0.2);
  await page.mouse.down();
  await page.mouse.move(cx + box.width * 0.25, cy - box.height * 0.2, { steps: 20 });
  await page.mouse.up();
  await poll(page, () => Number(document.querySelector('.viewer')?.dataset.strokes) > 0, 10_000, 'the stroke after the crosshairs');
  await page.click('button[data-mode=navigate]');
  await page.waitForTimeout(500);
  const brushAgain = await colourCounts(page, await page.locator('[data-viewport=axial]').screenshot({ path: join(artifacts, 'axial-brush-after-crosshairs.png') }), colours);
  console.log(`BRUSH_AFTER_CROSSHAIRS segment=${paintSegment} ${beforeBrush.counts[paintSegment]} → ${brushAgain.counts[paintSegment]}`);
  assert(brushAgain.counts[paintSegment] > beforeBrush.counts[paintSegment] + 50, `the brush paints after the crosshairs (${beforeBrush.counts[paintSegment]} → ${brushAgain.counts[paintSegment]})`);
  await page.getByRole('button', { name: 'Undo' }).click();
  await poll(page, () => document.querySelector('.viewer')?.dataset.strokes === '0', 10_000, 'the stroke after the crosshairs undone');

  // the sequence switch loads another series into the three viewports
  await page.getByRole('button', { name: 'FLAIR', exact: true }).click();
  await poll(page, () => document.querySelector('.loading-status') === null, 60_000, 'the FLAIR volume loaded');
  await page.waitForTimeout(800);
  await page.screenshot({ path: join(artifacts, 'viewer-flair.png') });
  const flair = await colourCounts(page, await page.locator('[data-viewport=axial]').screenshot(), colours);
  console.log(`FLAIR ${JSON.stringify(flair)}`);
  assert(flair.coloured > 50, `the overlay stays on the FLAIR (${flair.coloured} coloured pixels)`);

  // a failed job and a study still processing (the study record rewritten in flight by the test)
  const studyPath = `/api/studies/${studyUid}`;
  const rewrite = (job) => async (route) => {
    const response = await route.fetch();
    const study = await response.json();
    await route.fulfill({ response, json: { ...study, latest_job: { ...study.latest_job, ...job } } });
  };
  await page.getByRole('link', { name: '← Worklist' }).click();
  await row.waitFor({ timeout: 30_000 }); // the viewer has unmounted
  await page.route((u) => u.pathname === studyPath, rewrite({ state: 'failed', stage: 'inference', error: 'the inference server is unreachable' }));
  await page.goto(`${url}/#/studies/${studyUid}`);
  await page.waitForSelector('[data-job-state=failed]', { timeout: 30_000 });
  const failedText = await page.locator('[data-job-state=failed]').textContent();
  assert(failedText.includes('the inference server is unreachable'), `the failure reason is shown: ${failedText}`);
  await page.unrouteAll();
  await page.getByRole('link', { name: '← Worklist' }).click();
  await row.waitFor({ timeout: 30_000 });
  await page.route((u) => u.pathname === studyPath, rewrite({ state: 'running', stage: 'inference', progress: 0.5 }), { times: 1 });
  // the progress stream is held back a little, long enough to see the notice (the real job has ended)
  await page.route((u) => /^\/api\/jobs\/[^/]+\/events$/.test(u.pathname), async (route) => {
    await new Promise((resolve) => setTimeout(resolve, 3000));
    await route.continue();
  }, { times: 1 });
  await page.goto(`${url}/#/studies/${studyUid}`);
  await page.waitForSelector('.notice[data-job-state=running]', { timeout: 30_000 });
  await page.screenshot({ path: join(artifacts, 'viewer-processing.png') });
  // the live progress (the real job has finished) reloads the study, and the overlay follows
  await page.waitForSelector('.viewer[data-overlay-ready="true"]', { timeout: 60_000 });
  console.log('PROCESSING → overlay shown once the job ended; FAILED → reason shown');

  // an expired session: the tokens are revoked server-side → back to sign-in with a message
  await page.evaluate(() => {
    const raw = JSON.parse(sessionStorage.getItem('glioscope.session'));
    sessionStorage.setItem('glioscope.session', JSON.stringify({ ...raw, accessToken: 'expired', refreshToken: 'spent', expiresAt: 0 }));
  });
  await page.getByRole('link', { name: '← Worklist' }).click();
  await page.waitForSelector('form.signin [role=status]', { timeout: 30_000 });
  const expired = await page.locator('form.signin [role=status]').textContent();
  console.log(`EXPIRED "${expired}"`);
  assert(/expired/i.test(expired), 'the sign-in page says the session expired');

  // the expired-session step provokes the 401s it is about; any other failed response (a 404 from the
  // versions route included) is an error
  console.log(`FAILED RESPONSES ${JSON.stringify(failedResponses)}`);
  const serious = errors.filter((e) => !/favicon|DevTools|status of 401/.test(e));
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
