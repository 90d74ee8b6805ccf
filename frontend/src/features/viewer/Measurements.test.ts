import { createElement } from 'react';
import { renderToStaticMarkup } from 'react-dom/server';
import { describe, expect, it } from 'vitest';
import { MeasurementsView, NO_MEASUREMENTS, NO_TUMOUR, ROUNDING_NOTE, measurementTable, parseMeasurements } from './Measurements';
import { fixed } from './measurementFormat';

const LABEL_NAMES: Record<number, string> = {
  1: 'Necrotic / non-enhancing tumour core',
  2: 'Peritumoural oedema',
  3: 'Enhancing tumour',
};
const REGIONS: Record<string, number[]> = { WT: [1, 2, 3], TC: [1, 3], ET: [3] };

/** The worker's measurements JSON for a mask with these voxel counts (as measure.py computes it). */
function measurementsFor(counts: Record<number, number>, voxelMl: number): Record<string, unknown> {
  const volume = (labels: number[]) => labels.reduce((sum, label) => sum + (counts[label] ?? 0), 0) * voxelMl;
  return {
    label_volumes: [3, 1, 2].map((label) => ({ label, name: LABEL_NAMES[label], volume_ml: (counts[label] ?? 0) * voxelMl })),
    region_volumes_ml: Object.fromEntries(Object.entries(REGIONS).map(([key, labels]) => [key, volume(labels)])),
    max_axial_diameter_mm: 41.26,
    perpendicular_diameter_mm: 30.04,
    bidimensional_product_mm2: 41.26 * 30.04,
    axial_slice_index: 60,
    centroid_ras_mm: [25.0, -10.04, 15.55],
    hemisphere: 'right',
    location: { hemisphere: 'right', lobes: [{ name: 'frontal lobe', fraction: 0.8 }, { name: 'insula', fraction: 0.2 }], centroid_mni_mm: [31.5, 12.25, 40.75] },
    measured_on: { series_instance_uid: '1.2.3', series_number: 7, series_description: 'T1 post Gd', instance_number: 45 },
    quality: { wt: 0.95, tc: 0.9, et: 0.8, overall: 0.8, review: true, review_below: 0.85 },
    tumour_detected: true,
    input_warnings: [],
  };
}

function rows(html: string): [string, string][] {
  return [...html.matchAll(/<th scope="row">(.*?)<\/th><td>(.*?)<\/td>/g)].map((m) => [m[1], m[2]]);
}

const render = (json: Record<string, unknown>) => renderToStaticMarkup(createElement(MeasurementsView, { data: parseMeasurements(json) }));

describe('the measurements panel', () => {
  // 1 mm³ voxels: necrotic 1.76 mL, enhancing 1.16 mL, so TC = 2.92 mL shows 2.9 beside 1.8 and 1.2.
  const counts = { 1: 1760, 2: 30040, 3: 1160 };
  const voxelMl = 0.001;

  it('names every row as a clinician reads it, with its unit, in the report rounding', () => {
    const html = render(measurementsFor(counts, voxelMl));
    expect(rows(html)).toEqual([
      ['Whole tumour (WT)', '33.0 mL'],
      ['Tumour core (TC)', '2.9 mL'],
      ['Enhancing tumour (ET)', '1.2 mL'],
      ['Necrotic / non-enhancing tumour core', '1.8 mL'],
      ['Peritumoural oedema', '30.0 mL'],
      ['Enhancing tumour', '1.2 mL'],
      ['Maximum axial diameter', '41.3 mm'],
      ['Perpendicular diameter', '30.0 mm'],
      ['Bidimensional product', '1239.5 mm²'],
      ['Measured on', 'image 45, series 7 (T1 post Gd)'],
      ['Hemisphere', 'right'],
      ['Lobes (approximate)', 'frontal lobe, insula'],
      ['Model confidence (1 = fully confident)', '0.80 (under 0.85: review carefully)'],
    ]);
    for (const caption of ['Tumour regions', 'Segmentation labels', 'Axial measurement', 'Location']) {
      expect(html).toContain(`<caption>${caption}</caption>`);
    }
  });

  it('each figure is its own exact volume rounded, and the panel says so', () => {
    const json = measurementsFor(counts, voxelMl);
    const html = render(json);
    const shown = Object.fromEntries(rows(html));
    for (const [key, labels] of Object.entries(REGIONS)) {
      const exact = labels.reduce((sum, label) => sum + counts[label as 1 | 2 | 3], 0) * voxelMl;
      const name = { WT: 'Whole tumour (WT)', TC: 'Tumour core (TC)', ET: 'Enhancing tumour (ET)' }[key] as string;
      expect(shown[name]).toBe(`${fixed(exact)} mL`);
    }
    // the rounded parts do not add up to the rounded total here: 1.8 + 1.2 = 3.0, TC 2.9
    expect(shown['Tumour core (TC)']).toBe('2.9 mL');
    expect(html).toContain(ROUNDING_NOTE);
  });

  it('shows no raw key, no scanner coordinates and no atlas coordinates', () => {
    const html = render(measurementsFor(counts, voxelMl));
    expect(html).not.toMatch(/_|mm2\b|centroid|RAS|MNI|slice/i);
    for (const coordinate of ['25.0', '-10.0', '15.6', '31.5', '12.2', '40.8']) expect(html).not.toContain(coordinate);
  });

  it('orders labels by value and keeps input warnings', () => {
    const json = { ...measurementsFor(counts, voxelMl), input_warnings: ['The images do not look skull-stripped.'] };
    const table = measurementTable(parseMeasurements(json));
    expect(table.labels.map((r) => r.name)).toEqual([LABEL_NAMES[1], LABEL_NAMES[2], LABEL_NAMES[3]]);
    expect(render(json)).toContain('role="alert">The images do not look skull-stripped.</p>');
  });

  it('says when no tumour was detected and shows no location', () => {
    const json = { ...measurementsFor({}, voxelMl), tumour_detected: false, hemisphere: 'none', max_axial_diameter_mm: 0 };
    const html = render(json);
    expect(html).toContain(NO_TUMOUR);
    expect(html).not.toContain('Hemisphere');
    expect(rows(html)[0]).toEqual(['Whole tumour (WT)', '0.0 mL']);
  });

  it('an undetermined location says why and names no side or lobe; empty measurements say so and claim nothing', () => {
    const undetermined = render({
      ...measurementsFor(counts, voxelMl), hemisphere: 'undetermined', location: null,
      location_note: 'the registration to the atlas was rejected',
    });
    expect(undetermined).not.toContain('Hemisphere');
    expect(undetermined).not.toContain('Lobes');
    expect(rows(undetermined)).toContainEqual(['Location', 'not available (the registration to the atlas was rejected)']);
    const html = render({});
    expect(rows(html)).toEqual([]);
    expect(html).toContain(NO_MEASUREMENTS);
    expect(html).not.toContain(NO_TUMOUR);
  });
});

describe('the sequences a segmentation was made from', () => {
  const withoutT1c = {
    label_volumes: [{ label: 5, name: 'Whole tumour (not subdivided: no T1c)', volume_ml: 46.04 }],
    region_volumes_ml: { WT: 46.04 },
    max_axial_diameter_mm: 41.26,
    perpendicular_diameter_mm: 30.04,
    bidimensional_product_mm2: 1239.5,
    hemisphere: 'undetermined',
    tumour_detected: true,
    input_warnings: [],
    sequences_used: ['T1', 'T2', 'FLAIR'],
    sequences_missing: ['T1c'],
    regions_reported: ['WT'],
    regions_not_reported: {
      TC: 'there is no post-contrast T1 (T1c), which the tumour core, enhancement and necrosis need',
      ET: 'there is no post-contrast T1 (T1c), which the tumour core, enhancement and necrosis need',
    },
  };

  it('says which sequences were used and which regions are not reported, and why, as the report does', () => {
    const html = render(withoutT1c);
    expect(html).toContain(
      'Sequences used: T1, T2, FLAIR; not available: T1c; regions not reported: tumour core (TC) and enhancing tumour (ET), ' +
        'because there is no post-contrast T1 (T1c), which the tumour core, enhancement and necrosis need.',
    );
    expect(html).toContain('class="sequences warning"');
    expect(rows(html).slice(0, 4)).toEqual([
      ['Whole tumour (WT)', '46.0 mL'],
      ['Tumour core (TC)', 'not reported'],
      ['Enhancing tumour (ET)', 'not reported'],
      ['Whole tumour (not subdivided: no T1c)', '46.0 mL'],
    ]);
    expect(html).not.toMatch(/(Tumour core|Enhancing tumour) \((TC|ET)\)<\/th><td>\d/);
  });

  it('measurements stored before the sequence fields read as from all four sequences', () => {
    const table = measurementTable(parseMeasurements(measurementsFor({ 1: 10, 2: 20, 3: 30 }, 0.001)));
    expect(table.sequences).toBe('Sequences used: T1, T1c, T2, FLAIR; not available: none; all regions reported.');
    expect(table.regions.map((r) => r.value)).not.toContain('not reported');
  });
});
