import { describe, expect, it } from 'vitest';
import type { Study } from '../api/client';
import { brainMaskUrl, gunzipIfNeeded, parseNifti, sampleOntoGrid, type NiftiVolume } from './brainMask';

/** A single-file NIfTI-1 (348-byte header + 4 bytes of extension flags) as nibabel writes it. */
function nifti(dims: [number, number, number], data: ArrayLike<number>, options: {
  datatype?: number; sform?: number[][]; qform?: { quatern: [number, number, number]; pixdim: [number, number, number]; offset: [number, number, number]; qfac?: number };
} = {}): ArrayBuffer {
  const datatype = options.datatype ?? 2;
  const bytes = { 2: 1, 4: 2, 16: 4 }[datatype as 2 | 4 | 16];
  const buffer = new ArrayBuffer(352 + dims[0] * dims[1] * dims[2] * bytes);
  const view = new DataView(buffer);
  view.setInt32(0, 348, true);
  [3, ...dims, 1, 1, 1, 1].forEach((n, i) => view.setInt16(40 + 2 * i, n, true));
  view.setInt16(70, datatype, true);
  view.setInt16(72, bytes * 8, true);
  view.setFloat32(108, 352, true);
  if (options.sform) {
    view.setInt16(254, 1, true);
    options.sform.forEach((row, r) => row.forEach((v, c) => view.setFloat32(280 + 16 * r + 4 * c, v, true)));
  }
  if (options.qform) {
    const q = options.qform;
    view.setInt16(252, 1, true);
    view.setFloat32(76, q.qfac ?? 1, true);
    q.pixdim.forEach((v, i) => view.setFloat32(80 + 4 * i, v, true));
    q.quatern.forEach((v, i) => view.setFloat32(256 + 4 * i, v, true));
    q.offset.forEach((v, i) => view.setFloat32(268 + 4 * i, v, true));
  }
  new Uint8Array(buffer, 344, 4).set([0x6e, 0x2b, 0x31, 0]); // "n+1\0"
  for (let n = 0; n < data.length; n++) {
    if (datatype === 2) view.setUint8(352 + n, data[n]);
    else if (datatype === 4) view.setInt16(352 + 2 * n, data[n], true);
    else view.setFloat32(352 + 4 * n, data[n], true);
  }
  return buffer;
}

async function gzip(buffer: ArrayBuffer): Promise<ArrayBuffer> {
  return new Response(new Blob([buffer]).stream().pipeThrough(new CompressionStream('gzip'))).arrayBuffer();
}

// The T1c of the raw study, small: 0.9 x 0.9 mm in-plane, 5.5 mm slices, DICOM axial (LPS identity directions).
const DIMS: [number, number, number] = [6, 5, 4];
const ORIGIN: [number, number, number] = [-100, -120, -60]; // LPS
const GRID = { dimensions: DIMS, spacing: [0.9, 0.9, 5.5] as [number, number, number], origin: ORIGIN, direction: [1, 0, 0, 0, 1, 0, 0, 0, 1] };
// The worker's NIfTI of that grid: same voxel order, RAS affine (x and y negated)
const AFFINE = [[-0.9, 0, 0, 100], [0, -0.9, 0, 120], [0, 0, 5.5, -60], [0, 0, 0, 1]];
const MASK = Uint8Array.from({ length: 6 * 5 * 4 }, (_, n) => {
  const [i, j, k] = [n % 6, Math.floor(n / 6) % 5, Math.floor(n / 30)];
  return i >= 1 && i <= 4 && j >= 1 && j <= 3 && k >= 1 && k <= 2 && !(i === 4 && j === 3) ? 1 : 0;
});
const INSIDE = MASK.reduce((a, v) => a + v, 0);

describe('which studies have a brain mask', () => {
  const study = (job: Partial<NonNullable<Study['latest_job']>> | null) =>
    ({ study_instance_uid: '1.2.3', latest_job: job && { state: 'succeeded', ...job } }) as Study;
  it('only a succeeded job that stored one', () => {
    expect(brainMaskUrl(null)).toBeNull();
    expect(brainMaskUrl(study(null))).toBeNull();
    expect(brainMaskUrl(study({ nifti_paths: { mask: 'x_dseg.nii.gz' } }))).toBeNull(); // skull-stripped input
    expect(brainMaskUrl(study({ state: 'running', nifti_paths: { brain_mask: 'b' } }))).toBeNull();
    expect(brainMaskUrl(study({}))).toBeNull(); // an older gateway without nifti_paths
    expect(brainMaskUrl(study({ nifti_paths: { mask: 'm', brain_mask: 'derivatives/…_desc-brain_mask.nii.gz' } }))).toBe(
      '/api/studies/1.2.3/brain-mask.nii.gz',
    );
  });
});

describe('NIfTI brain mask', () => {
  it('reads the worker\'s gzipped uint8 mask with its sform', async () => {
    const parsed = parseNifti(await gunzipIfNeeded(await gzip(nifti(DIMS, MASK, { sform: AFFINE.slice(0, 3) }))));
    expect(parsed.dimensions).toEqual(DIMS);
    expect(parsed.affine).toEqual(AFFINE.map((row) => row.map((v) => Math.fround(v))));
    expect(Array.from(parsed.data)).toEqual(Array.from(MASK));
  });

  it('reads an uncompressed file, other voxel types as non-zero = inside, and a qform', async () => {
    const floats = Array.from(MASK, (v) => v * 0.5);
    const parsed = parseNifti(await gunzipIfNeeded(nifti(DIMS, floats, { datatype: 16, qform: {
      quatern: [0, 0, 1], pixdim: [0.9, 0.9, 5.5], offset: [100, 120, -60] } }))); // 180° about z: x and y negated
    expect(Array.from(parsed.data)).toEqual(Array.from(MASK));
    parsed.affine.flat().forEach((v, n) => expect(v).toBeCloseTo(AFFINE.flat()[n], 5));
    expect(Array.from(parseNifti(nifti(DIMS, MASK, { datatype: 4, sform: AFFINE.slice(0, 3) })).data)).toEqual(Array.from(MASK));
  });

  it('refuses what is not a 3-D NIfTI-1', () => {
    expect(() => parseNifti(new ArrayBuffer(100))).toThrow(/too short/);
    const bad = nifti(DIMS, MASK, { sform: AFFINE.slice(0, 3) });
    new Uint8Array(bad, 344, 1)[0] = 0x78;
    expect(() => parseNifti(bad)).toThrow(/magic/);
    expect(() => parseNifti(nifti(DIMS, MASK, { sform: AFFINE.slice(0, 3) }).slice(0, 400))).toThrow(/truncated/);
    const fourD = nifti(DIMS, MASK, { sform: AFFINE.slice(0, 3) });
    new DataView(fourD).setInt16(40, 4, true);
    new DataView(fourD).setInt16(48, 2, true);
    expect(() => parseNifti(fourD)).toThrow(/3-D/);
  });
});

describe('the mask on the viewer\'s grid', () => {
  const parsed = (data: ArrayLike<number>, affine: number[][]): NiftiVolume => parseNifti(nifti(DIMS, data, { sform: affine.slice(0, 3) }));

  it('maps every voxel of the T1c grid to itself', () => {
    const out = new Uint8Array(MASK.length);
    expect(sampleOntoGrid(parsed(MASK, AFFINE), GRID, out)).toBe(INSIDE);
    expect(Array.from(out)).toEqual(Array.from(MASK));
  });

  it('follows the affine when the NIfTI stores the voxels in another order (i flipped)', () => {
    const flipped = Uint8Array.from(MASK, (_, n) => {
      const [i, rest] = [n % 6, n - (n % 6)];
      return MASK[rest + (5 - i)];
    });
    // voxel i of the file is voxel 5 - i of the grid: RAS x = 100 - 0.9 (5 - i) = 95.5 + 0.9 i
    const affine = [[0.9, 0, 0, 100 - 0.9 * 5], ...AFFINE.slice(1)];
    const out = new Uint8Array(MASK.length);
    sampleOntoGrid(parsed(flipped, affine), GRID, out);
    expect(Array.from(out)).toEqual(Array.from(MASK));
  });

  it('leaves a larger grid empty outside the mask\'s field of view, and checks the labelmap size', () => {
    const big = { ...GRID, dimensions: [8, 5, 4] as [number, number, number] };
    const out = new Uint8Array(8 * 5 * 4).fill(7);
    expect(sampleOntoGrid(parsed(MASK, AFFINE), big, out)).toBe(INSIDE);
    for (let n = 0; n < out.length; n++) if (n % 8 >= 6) expect(out[n]).toBe(0);
    expect(() => sampleOntoGrid(parsed(MASK, AFFINE), GRID, new Uint8Array(3))).toThrow(/voxels/);
  });
});
