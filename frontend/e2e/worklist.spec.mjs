// The worklist in a real browser (issue 21, item 5) against a running gateway; run by
// tests/frontend/test_frames_and_worklist.py with studies of known names, IDs, dates and statuses.
// Checks: names "Family, Given" and ISO dates, a patient ID column, the order after clicking the Patient,
// Patient ID and Date headers (aria-sort and the arrow), the status filter offering exactly the worklist
// statuses (GLIOSCOPE_STATUSES, from worklistModel.ts) and every badge's status among them, a chosen
// status leaving only its badges. GLIOSCOPE_EXPECT: JSON {study_uid: {name, id, date}}.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { assert, CHROMIUM_ARGS, env, signIn } from './browser-helpers.mjs';

const url = env('GLIOSCOPE_URL');
const expected = JSON.parse(env('GLIOSCOPE_EXPECT'));
const statuses = JSON.parse(env('GLIOSCOPE_STATUSES'));
const artifacts = env('GLIOSCOPE_ARTIFACTS', 'test-artifacts/frontend');
mkdirSync(artifacts, { recursive: true });

const browser = await chromium.launch({ executablePath: env('CHROMIUM_PATH', '/usr/bin/chromium'), args: CHROMIUM_ARGS });
const errors = [];
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 700 } });
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => m.type() === 'error' && errors.push(`console: ${m.text()}`));
  await signIn(page, url, env('GLIOSCOPE_USERNAME'), env('GLIOSCOPE_PASSWORD'));
  for (const uid of Object.keys(expected)) await page.locator(`tr[data-study="${uid}"]`).waitFor({ timeout: 30_000 });

  const rows = () =>
    page.$$eval('table.studies tbody tr', (trs) =>
      trs.map((tr) => ({
        uid: tr.dataset.study,
        name: tr.querySelector('[data-col=name]').textContent,
        id: tr.querySelector('[data-col=id]').textContent,
        date: tr.querySelector('[data-col=date]').textContent,
        status: tr.querySelector('.badge').dataset.status,
      })),
    );
  const ours = async () => (await rows()).filter((r) => r.uid in expected);

  // formatted names and dates, the patient ID
  for (const r of await ours()) {
    const e = expected[r.uid];
    assert(r.name === e.name && r.id === e.id && r.date === e.date, `row ${r.uid}: ${JSON.stringify(r)} is ${JSON.stringify(e)}`);
  }
  // default: newest first, the Date header says so
  const dateHeader = page.locator('th[data-sort-key=date]');
  assert((await dateHeader.getAttribute('aria-sort')) === 'descending', 'sorted by date, newest first, at first');
  const isSorted = (values, dir) => values.every((v, i) => i === 0 || (dir === 'asc' ? values[i - 1].localeCompare(v, 'en', { sensitivity: 'base', numeric: true }) <= 0 : values[i - 1].localeCompare(v, 'en', { sensitivity: 'base', numeric: true }) >= 0));
  for (const [key, field] of [['name', 'name'], ['id', 'id'], ['date', 'date']]) {
    const header = page.locator(`th[data-sort-key=${key}]`);
    const clicks = key === 'date' ? 2 : 1; // a date column starts newest first
    for (let i = 0; i < clicks; i++) await header.locator('button').click();
    assert((await header.getAttribute('aria-sort')) === 'ascending', `${key}: ascending after a click`);
    assert((await header.textContent()).includes('▲'), `${key}: the arrow shows it`);
    const up = (await ours()).map((r) => r[field]);
    assert(isSorted(up, 'asc'), `${key} ascending: ${up}`);
    if (key === 'name') await page.screenshot({ path: join(artifacts, 'worklist-sorted-by-name.png') });
    await header.locator('button').click();
    assert((await header.getAttribute('aria-sort')) === 'descending' && (await header.textContent()).includes('▼'), `${key}: descending after another`);
    const down = (await ours()).map((r) => r[field]);
    assert(isSorted(down, 'desc') && down.join() !== up.join(), `${key} descending: ${down}`);
  }
  console.log(`ROWS ${JSON.stringify(await ours())}`);

  // the status filter offers exactly the statuses a badge can show, and each badge's status is one of them
  const options = await page.$$eval('select[aria-label=Status] option', (os) => os.map((o) => o.value).filter(Boolean));
  assert(JSON.stringify(options) === JSON.stringify(statuses), `filter options ${options} are the worklist statuses ${statuses}`);
  const shown = [...new Set((await rows()).map((r) => r.status))];
  assert(shown.every((s) => options.includes(s)), `badge statuses ${shown} all offered`);
  assert(shown.length >= 2, `rows of several statuses (${shown})`);
  for (const status of shown) {
    await page.selectOption('select[aria-label=Status]', status);
    await page.waitForTimeout(300);
    const left = (await rows()).map((r) => r.status);
    assert(left.length > 0 && left.every((s) => s === status), `filter ${status}: only its rows (${left})`);
  }
  await page.selectOption('select[aria-label=Status]', 'failed');
  await page.waitForTimeout(300);
  const none = await page.locator('table.studies tbody tr').count();
  assert(shown.includes('failed') || none === 0, 'a status nobody has: no rows');
  await page.selectOption('select[aria-label=Status]', '');
  await page.screenshot({ path: join(artifacts, 'worklist-formatted.png') });
  assert(errors.length === 0, `no page errors: ${errors.join('; ')}`);
  console.log('WORKLIST OK');
} finally {
  await browser.close();
}
