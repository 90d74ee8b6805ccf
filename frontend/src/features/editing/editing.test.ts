import { describe, expect, it } from 'vitest';
import { encodeLabels, fromBase64, geometryOf, gunzip, newVersionBody, toBase64, toLabels, voxelCounts, voxelToWorld } from './labelmap';
import { canEditSegmentation, describeVersion, hasResult, latestVersion, latestWithResult, saveErrorMessage, sortVersions, totalVoxels, type SegVersion } from './versions';

const grid = {
  dimensions: [4, 3, 2] as [number, number, number],
  spacing: [1, 2, 3] as [number, number, number],
  origin: [10, 20, 30] as [number, number, number],
  direction: [0, 1, 0, -1, 0, 0, 0, 0, 1],
};

describe('labelmap encoding', () => {
  it('round-trips labels through gzip and base64, index i + j*nx + k*nx*ny', async () => {
    const labels = new Uint8Array(4 * 3 * 2);
    labels[1 + 2 * 4 + 1 * 12] = 3; // (1, 2, 1)
    labels[0] = 1;
    const encoded = await encodeLabels(labels);
    const bytes = fromBase64(encoded);
    expect([bytes[0], bytes[1]]).toEqual([0x1f, 0x8b]); // a gzip member
    expect(Array.from(await gunzip(bytes))).toEqual(Array.from(labels));
  });

  it('builds the request body with the grid and the base version', async () => {
    const data = new Float32Array(24);
    data[5] = 2;
    const body = await newVersionBody(7, '1.2.3', geometryOf(grid), data);
    expect(body.base_version).toBe(7);
    expect(body.source_series_instance_uid).toBe('1.2.3');
    expect(body.geometry).toEqual({ dimensions: [4, 3, 2], spacing: [1, 2, 3], origin: [10, 20, 30], direction: grid.direction });
    const labels = await gunzip(fromBase64(body.labels));
    expect(labels.length).toBe(24);
    expect(labels[5]).toBe(2);
    expect(JSON.parse(JSON.stringify(body)).geometry.direction).toHaveLength(9);
  });

  it('refuses labels out of range and grids of the wrong size', () => {
    expect(() => toLabels(new Uint8Array([0, 4]), 2)).toThrow(/label 4/);
    expect(() => toLabels(new Float32Array([0, 1.5]), 2)).toThrow(/label 1.5/);
    expect(() => toLabels(new Uint8Array(3), 2)).toThrow(/3 voxels/);
    expect(() => geometryOf({ ...grid, direction: [1, 0, 0] })).toThrow(/9 numbers/);
  });

  it('counts voxels per segment and encodes large arrays without overflowing', () => {
    expect(voxelCounts([0, 1, 1, 3, 2, 0])).toEqual({ '1': 2, '2': 1, '3': 1 });
    const big = new Uint8Array(300_000).fill(65);
    expect(toBase64(big).slice(0, 8)).toBe('QUFBQUFB');
    expect(fromBase64(toBase64(big)).length).toBe(300_000);
  });

  it('places voxels with the contract formula (direction columns scaled by spacing)', () => {
    // i runs along direction[0:3] = +y with 1 mm, j along -x with 2 mm, k along +z with 3 mm
    expect(voxelToWorld(grid, 0, 0, 0)).toEqual([10, 20, 30]);
    expect(voxelToWorld(grid, 2, 1, 1)).toEqual([10 - 2, 20 + 2, 30 + 3]);
  });
});

const v = (version: number, source: 'model' | 'edited', counts: Record<string, number>, by: string | null = null): SegVersion => ({
  version,
  source,
  created_by: by,
  created_at: '2026-11-25T21:30:00Z',
  job_id: `job-${version}`,
  seg_series_instance_uid: '1.2',
  seg_sop_instance_uid: '1.2.3',
  voxel_counts: counts,
});

describe('segmentation versions', () => {
  it('orders versions newest first and finds the latest (the next base)', () => {
    const list = [v(1, 'model', { '1': 10 }), v(3, 'edited', { '1': 12 }, 'dr-a'), v(2, 'edited', { '1': 11 }, 'dr-b')];
    expect(sortVersions(list).map((x) => x.version)).toEqual([3, 2, 1]);
    expect(latestVersion(list)?.version).toBe(3);
    expect(latestVersion([])).toBeNull();
    expect(totalVoxels(v(1, 'model', { '1': 10, '2': 5, '3': 1 }))).toBe(16);
  });

  it('bases a save on the highest version and shows the highest with a result', () => {
    const list = [v(1, 'model', { '1': 10 }), { ...v(2, 'edited', { '1': 11 }, 'dr-a'), state: 'succeeded' as const }, { ...v(3, 'edited', {}, 'dr-b'), state: 'failed' as const, voxel_counts: null }];
    expect(latestVersion(list)?.version).toBe(3);
    expect(latestWithResult(list)?.version).toBe(2);
    expect(hasResult(list[0])).toBe(true); // no state: an older server, every version has a SEG
    expect(hasResult(list[2])).toBe(false);
    expect(describeVersion(list[2])).toMatch(/ · failed$/);
    expect(totalVoxels(list[2])).toBe(0);
  });

  it('says who made a version and when', () => {
    const now = new Date('2026-11-25T23:00:00Z');
    expect(describeVersion(v(1, 'model', {}), now)).toMatch(/^v1 · AI model · /);
    expect(describeVersion(v(2, 'edited', {}, 'dr-a'), now)).toMatch(/^v2 · dr-a · /);
    expect(describeVersion({ ...v(2, 'edited', {}, 'dr-a'), created_at: '2026-01-02T03:04:05Z' }, now)).toContain('2026-01-0');
  });

  it('lets admin, radiologist and clinician edit, not researchers', () => {
    expect(['admin', 'radiologist', 'clinician'].every(canEditSegmentation)).toBe(true);
    expect(canEditSegmentation('researcher')).toBe(false);
    expect(canEditSegmentation(null)).toBe(false);
  });

  it('turns save failures into messages a user can act on', () => {
    expect(saveErrorMessage(409, 'stale')).toMatch(/newer version/);
    expect(saveErrorMessage(422, 'labels do not match the grid')).toBe('The edit could not be saved: labels do not match the grid');
    expect(saveErrorMessage(404, '')).toMatch(/cannot store/);
  });
});
