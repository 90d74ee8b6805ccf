// OHIF Viewer v3 (a viewer no one here wrote) opens a study Glioscope has processed, in Debian's
// chromium driven by playwright-core: the study browser lists every series (T1, T1c, T2, FLAIR, the
// DICOM-SEG, the TID 1500 SR, the Encapsulated PDF), the SEG is loaded the way a user does it
// (double-click, "Yes" to open it) onto the T1c, its three segments are listed by name, its colours
// are drawn over the image, OHIF's labelmap holds, slice by slice, the voxels the SEG's frames hold,
// and the report PDF is fetched and shown. Opening the SR is probed and reported, not asserted.
// Run by tests/interop/test_ohif.py, which serves OHIF and writes the expectations (read from the
// PACS, not from OHIF) to OHIF_EXPECT; by hand:
//   OHIF_URL=http://127.0.0.1:… OHIF_STUDY_UID=… OHIF_EXPECT=expect.json node ohif.spec.mjs
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { assert, CHROMIUM_ARGS, colourCounts, env } from '../../../frontend/e2e/browser-helpers.mjs';

const url = env('OHIF_URL');
const studyUid = env('OHIF_STUDY_UID');
const expect = JSON.parse(readFileSync(env('OHIF_EXPECT'), 'utf8'));
const artifacts = env('OHIF_ARTIFACTS', 'test-artifacts/ohif');
const executablePath = env('CHROMIUM_PATH', '/usr/bin/chromium');
mkdirSync(artifacts, { recursive: true });

const browser = await chromium.launch({ executablePath, args: CHROMIUM_ARGS });
const errors = []; // console errors, page errors and DICOMweb answers >= 400 while the study and the SEG load
const warnings = [];
const messages = []; // every console message, for the SR probe (OHIF logs its error boundary at debug level)
try {
  const page = await browser.newPage({ viewport: { width: 1600, height: 900 } });
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    messages.push(`${m.type()}: ${m.text().split('\n')[0].slice(0, 200)}`);
    if (m.type() === 'error') errors.push(`console: ${m.text()}`);
    else if (m.type() === 'warning') warnings.push(m.text().slice(0, 300));
  });
  page.on('response', (r) => r.status() >= 400 && errors.push(`HTTP ${r.status()} ${new URL(r.url()).pathname}`));
  // A returning user: OHIF's onboarding tour (stored per browser) is not shown over the viewport.
  await page.addInitScript(() => localStorage.setItem('shownTours', JSON.stringify(['basicViewerTour'])));
  const started = Date.now();
  await page.goto(`${url}/viewer?StudyInstanceUIDs=${studyUid}`);

  // The study browser: every series of the study, by modality and description.
  const items = page.locator('[data-cy^="study-browser-thumbnail"]');
  await items.first().waitFor({ timeout: 60_000 });
  await page.waitForFunction((n) => document.querySelectorAll('[data-cy^="study-browser-thumbnail"]').length >= n,
    expect.series.length, { timeout: 30_000 });
  const listed = await items.evaluateAll((els) => els.map((el) => ({
    modality: el.querySelector('[data-cy="series-modality-label"]')?.textContent.trim() ?? '',
    description: el.querySelector('[data-cy="series-description-label"]')?.textContent.trim() ?? '',
    text: el.textContent,
  })));
  console.log(`STUDY BROWSER ${JSON.stringify(listed.map((s) => `${s.modality} ${s.description}`))}`);
  for (const series of expect.series) {
    const found = listed.find((s) => s.modality === series.modality && s.text.includes(series.description));
    assert(found, `${series.modality} "${series.description}" listed in the study browser`);
  }
  assert(listed.some((s) => s.modality === 'SR' && s.text.includes(expect.sr_description)), 'the SR is listed');

  const skipTour = page.getByRole('button', { name: 'Skip all' });
  if (await skipTour.count()) await skipTour.click();

  // The first image: a lit, grey MR image in the viewport's canvas.
  const canvas = page.locator('[data-cy="viewport-pane"] canvas').first();
  await canvas.waitFor({ timeout: 60_000 });
  let first = null;
  for (const deadline = Date.now() + 60_000; Date.now() < deadline; await page.waitForTimeout(250)) {
    first = await colourCounts(page, await canvas.screenshot(), {});
    if (first.grey > first.pixels * 0.05) break;
  }
  const firstImageMs = Date.now() - started;
  await page.screenshot({ path: join(artifacts, 'study.png') });
  console.log(`FIRST IMAGE ${JSON.stringify(first)} first_image_ms=${firstImageMs}`);
  assert(first.grey > first.pixels * 0.05, `the first image is drawn (${first.grey} of ${first.pixels} pixels lit)`);

  // The SEG, as a user loads it: double-click in the study browser, "Yes" to open it.
  const segStarted = Date.now();
  await items.filter({ has: page.locator('[data-cy="series-modality-label"]', { hasText: /^SEG$/ }) }).dblclick();
  await page.getByText('Do you want to open this Segmentation?').waitFor({ timeout: 30_000 });
  await page.screenshot({ path: join(artifacts, 'seg-prompt.png') });
  await page.getByRole('button', { name: 'Yes', exact: true }).click();
  await page.waitForFunction(() => window.cornerstoneTools?.segmentation.state.getSegmentations()
    .some((s) => s.representationData?.Labelmap?.imageIds?.length), null, { timeout: 60_000 });

  const shown = await page.evaluate(() => {
    const { viewportGridService, displaySetService } = window.services;
    const { activeViewportId, viewports } = viewportGridService.getState();
    const uids = viewports.get(activeViewportId)?.displaySetInstanceUIDs ?? [];
    return uids.map((uid) => displaySetService.getDisplaySetByUID(uid)).map((d) => ({ modality: d?.Modality, series: d?.SeriesInstanceUID }));
  });
  console.log(`VIEWPORT DISPLAY SETS ${JSON.stringify(shown)}`);
  assert(shown.some((d) => d.series === expect.t1c_series_uid), 'the SEG is shown on the T1c (its referenced series)');
  await page.locator('[data-cy="viewport-overlay-top-left"]', { hasText: expect.t1c_description }).first()
    .waitFor({ timeout: 10_000 });

  // The segmentation panel lists the SEG's segments by name.
  const rows = page.locator('[data-cy="data-row-title"]');
  if (!(await rows.count())) await page.click('[data-cy="panelSegmentation-btn"]');
  await rows.first().waitFor({ timeout: 20_000 });
  const labels = (await rows.allTextContents()).map((t) => t.trim());
  console.log(`SEGMENTS ${JSON.stringify(labels)}`);
  for (const segment of expect.segments) assert(labels.includes(segment.label), `segment "${segment.label}" listed`);

  // OHIF's labelmap holds the SEG's voxels on the right T1c images: counts per (T1c SOP Instance UID,
  // segment number) equal those of the SEG's frames.
  const voxels = await page.evaluate(() => {
    const { cache } = window.cornerstone;
    const seg = window.cornerstoneTools.segmentation.state.getSegmentations()[0];
    const counts = {};
    let missing = 0;
    for (const id of seg.representationData.Labelmap.imageIds) {
      const image = cache.getImage(id);
      if (!image) { missing++; continue; }
      const sop = (image.referencedImageId.match(/\/instances\/([0-9.]+)/) || [])[1];
      for (const v of image.getPixelData()) if (v) counts[`${sop}:${v}`] = (counts[`${sop}:${v}`] || 0) + 1;
    }
    return { counts, missing };
  });
  const total = (counts) => Object.values(counts).reduce((a, b) => a + b, 0);
  console.log(`LABELMAP voxels=${total(voxels.counts)} keys=${Object.keys(voxels.counts).length} missing=${voxels.missing} `
    + `expected voxels=${total(expect.voxel_counts)} keys=${Object.keys(expect.voxel_counts).length}`);
  assert(voxels.missing === 0, `every labelmap image is in OHIF's cache (${voxels.missing} missing)`);
  const wrong = Object.keys({ ...voxels.counts, ...expect.voxel_counts })
    .filter((k) => voxels.counts[k] !== expect.voxel_counts[k]);
  assert(wrong.length === 0, `labelmap voxels per T1c image and segment equal the SEG's (${wrong.length} differ, e.g. `
    + `${wrong.slice(0, 3).map((k) => `${k}: ${voxels.counts[k]} vs ${expect.voxel_counts[k]}`).join('; ')})`);
  const segLoadedMs = Date.now() - segStarted;

  // The overlay drawn over the T1c: jump to the enhancing tumour (a click on its row) and count colours.
  const colours = Object.fromEntries(expect.segments.map((s) => [String(s.number), s.rgb]));
  const enhancing = expect.segments.find((s) => /enhancing tumour$/i.test(s.label) && !/non-enhancing/i.test(s.label));
  await rows.filter({ hasText: new RegExp(`^${enhancing.label}$`) }).click();
  await page.waitForTimeout(1500); // the jump, then the last render
  await page.screenshot({ path: join(artifacts, 'seg-on-t1c.png') });
  const overlay = await colourCounts(page, await canvas.screenshot({ path: join(artifacts, 'seg-on-t1c-viewport.png') }), colours);
  console.log(`OVERLAY ${JSON.stringify(overlay)} seg_loaded_ms=${segLoadedMs}`);
  assert(overlay.grey > overlay.pixels * 0.05, `the T1c is still drawn under the overlay (${overlay.grey} lit pixels)`);
  assert(overlay.counts[String(enhancing.number)] > 50, `the enhancing tumour's colour is drawn (${overlay.counts[String(enhancing.number)]} pixels)`);
  const segmentPixels = Object.values(overlay.counts).reduce((a, b) => a + b, 0);
  assert(segmentPixels > 300, `segment colours drawn over the image (${segmentPixels} pixels)`);
  assert(errors.length === 0, `no console error, page error or failed request while the study and the SEG loaded:\n${errors.join('\n')}`);

  // The report's Encapsulated PDF: OHIF fetches the document (WADO-RS bulk data) and embeds it; Debian's
  // chromium shows it with its PDF viewer (whose own frame may log errors: not counted).
  await items.filter({ has: page.locator('[data-cy="series-modality-label"]', { hasText: /^DOC$/ }) }).dblclick();
  const pdf = page.locator('[data-cy="viewport-pane"] object[type="application/pdf"]');
  await pdf.waitFor({ state: 'attached', timeout: 30_000 });
  let pdfUrl = null;
  for (const deadline = Date.now() + 30_000; Date.now() < deadline && !pdfUrl?.startsWith('blob:'); await page.waitForTimeout(200))
    pdfUrl = await pdf.getAttribute('data');
  const pdfFile = await page.evaluate(async (u) => {
    const bytes = new Uint8Array(await (await fetch(u)).arrayBuffer());
    return { head: String.fromCharCode(...bytes.slice(0, 5)), size: bytes.length };
  }, pdfUrl);
  await page.waitForTimeout(1500); // chromium's PDF viewer draws the first page
  await page.screenshot({ path: join(artifacts, 'report-pdf.png') });
  console.log(`PDF url=${pdfUrl?.slice(0, 40)} ${JSON.stringify(pdfFile)}`);
  assert(pdfFile.head === '%PDF-' && pdfFile.size > 1000, `the report PDF is fetched and embedded (${JSON.stringify(pdfFile)})`);
  console.log(`OHIF INTEROP OK first_image_ms=${firstImageMs} seg_loaded_ms=${segLoadedMs}`);

  // Probe, not asserted: what OHIF does when the SR is opened (its content is shown only for
  // measurements with image coordinates; see docs/testing.md). Reported for the record.
  const before = errors.length;
  const messagesBefore = messages.length;
  await items.filter({ has: page.locator('[data-cy="series-modality-label"]', { hasText: /^SR$/ }) }).dblclick();
  await page.waitForTimeout(3000);
  await page.screenshot({ path: join(artifacts, 'sr-opened.png') });
  const srErrors = [...errors.slice(before).map((e) => e.split('\n')[0].slice(0, 200)),
    ...messages.slice(messagesBefore).filter((m) => /error/i.test(m) && !m.startsWith('error:'))];
  const srWarnings = [...new Set(warnings.filter((w) => /SCOORD|rehydrat|ReferencedSOPSequence/i.test(w)))];
  console.log(`SR OPEN PROBE errors=${JSON.stringify(srErrors)} warnings=${JSON.stringify(srWarnings)}`);
} catch (error) {
  console.log(`ERRORS SO FAR ${JSON.stringify(errors)}`);
  throw error;
} finally {
  await browser.close();
}
