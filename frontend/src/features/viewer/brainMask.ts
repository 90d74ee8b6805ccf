// The brain mask outline (issue 15): the worker's deepbet brain mask, a NIfTI-1 on the T1c grid (RAS affine,
// uint8 0/1), read here and sampled onto the viewer's labelmap grid (Cornerstone: LPS world millimetres).
// Pure functions; the Cornerstone side is useBrainMaskOutline.ts.
import type { Study } from '../api/client';
import type { Geometry } from '../editing/labelmap';

/** The gateway's brain mask of a study: present only when brain extraction ran (the job lists it). */
export function brainMaskUrl(study: Pick<Study, 'study_instance_uid' | 'latest_job'> | null): string | null {
  const job = study?.latest_job;
  if (!job || job.state !== 'succeeded' || !job.nifti_paths?.brain_mask) return null;
  return `/api/studies/${encodeURIComponent(study.study_instance_uid)}/brain-mask.nii.gz`;
}

export interface NiftiVolume {
  dimensions: [number, number, number];
  affine: number[][]; // 4x4, voxel (i, j, k, 1) -> RAS mm
  data: Uint8Array; // non-zero = inside; i fastest, then j, then k
}

const GZIP = [0x1f, 0x8b];

/** Bytes of a .nii or .nii.gz (the browser's DecompressionStream for gzip). */
export async function gunzipIfNeeded(buffer: ArrayBuffer): Promise<ArrayBuffer> {
  const head = new Uint8Array(buffer, 0, Math.min(2, buffer.byteLength));
  if (head[0] !== GZIP[0] || head[1] !== GZIP[1]) return buffer;
  const stream = new Blob([buffer]).stream().pipeThrough(new DecompressionStream('gzip'));
  return new Response(stream).arrayBuffer();
}

/** qform (quaternion + pixdim + offsets) as a 4x4 affine, NIfTI-1's method 2. */
function qformAffine(view: DataView, le: boolean): number[][] {
  const f = (offset: number) => view.getFloat32(offset, le);
  const [b, c, d] = [f(256), f(260), f(264)];
  const a = Math.sqrt(Math.max(0, 1 - (b * b + c * c + d * d)));
  const qfac = f(76) < 0 ? -1 : 1;
  const [dx, dy, dz] = [f(80), f(84), f(88) * qfac];
  const r = [
    [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
    [2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)],
    [2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - c * c - b * b],
  ];
  const offsets = [f(268), f(272), f(276)];
  return [...r.map((row, i) => [row[0] * dx, row[1] * dy, row[2] * dz, offsets[i]]), [0, 0, 0, 1]];
}

/** A 3-D NIfTI-1 label image (uint8, int16, uint16, int32 or float32 voxels); anything else throws. */
export function parseNifti(buffer: ArrayBuffer): NiftiVolume {
  if (buffer.byteLength < 352) throw new Error('not a NIfTI-1 file (too short)');
  const view = new DataView(buffer);
  const le = view.getInt32(0, true) === 348;
  if (!le && view.getInt32(0, false) !== 348) throw new Error('not a NIfTI-1 file (sizeof_hdr is not 348)');
  const magic = String.fromCharCode(...new Uint8Array(buffer, 344, 3));
  if (magic !== 'n+1') throw new Error(`not a single-file NIfTI-1 (magic ${JSON.stringify(magic)})`);
  const ndim = view.getInt16(40, le);
  const dims = [1, 2, 3].map((i) => view.getInt16(40 + 2 * i, le)) as [number, number, number];
  const extra = Array.from({ length: Math.max(0, ndim - 3) }, (_, i) => view.getInt16(48 + 2 * i, le));
  if (ndim < 3 || ndim > 7 || extra.some((n) => n > 1) || dims.some((n) => n < 1)) throw new Error(`not a 3-D image (dim ${ndim}: ${dims})`);
  const datatype = view.getInt16(70, le);
  const voxOffset = Math.round(view.getFloat32(108, le));
  const count = dims[0] * dims[1] * dims[2];
  const sizes: Record<number, [number, (o: number) => number]> = {
    2: [1, (o) => view.getUint8(o)],
    4: [2, (o) => view.getInt16(o, le)],
    8: [4, (o) => view.getInt32(o, le)],
    16: [4, (o) => view.getFloat32(o, le)],
    512: [2, (o) => view.getUint16(o, le)],
  };
  const reader = sizes[datatype];
  if (!reader) throw new Error(`unsupported NIfTI datatype ${datatype}`);
  const [bytes, read] = reader;
  if (voxOffset < 352 || voxOffset + count * bytes > buffer.byteLength) throw new Error('the NIfTI file is truncated');
  const data = new Uint8Array(count);
  if (datatype === 2) data.set(new Uint8Array(buffer, voxOffset, count));
  else for (let n = 0; n < count; n++) data[n] = read(voxOffset + n * bytes) !== 0 ? 1 : 0;
  const sformCode = view.getInt16(254, le);
  const affine =
    sformCode > 0
      ? [0, 1, 2].map((row) => [0, 1, 2, 3].map((col) => view.getFloat32(280 + 16 * row + 4 * col, le))).concat([[0, 0, 0, 1]])
      : qformAffine(view, le);
  return { dimensions: dims, affine, data };
}

function invert4(m: number[][]): number[][] {
  // Gauss-Jordan on [m | I]; affines are well conditioned
  const a = m.map((row, i) => [...row, ...[0, 1, 2, 3].map((j) => (i === j ? 1 : 0))]);
  for (let col = 0; col < 4; col++) {
    let pivot = col;
    for (let r = col + 1; r < 4; r++) if (Math.abs(a[r][col]) > Math.abs(a[pivot][col])) pivot = r;
    if (Math.abs(a[pivot][col]) < 1e-12) throw new Error('the NIfTI affine is not invertible');
    [a[col], a[pivot]] = [a[pivot], a[col]];
    const p = a[col][col];
    for (let j = 0; j < 8; j++) a[col][j] /= p;
    for (let r = 0; r < 4; r++) {
      if (r === col) continue;
      const factor = a[r][col];
      for (let j = 0; j < 8; j++) a[r][j] -= factor * a[col][j];
    }
  }
  return a.map((row) => row.slice(4));
}

/**
 * The mask on a Cornerstone grid (LPS world, `direction` = row cosines, column cosines, normal), nearest voxel:
 * 1 where the grid voxel's centre falls in a mask voxel, 0 elsewhere (outside the mask's grid too). On the T1c's
 * own grid, which the worker writes the mask on, every voxel maps to itself. Returns the number of voxels set.
 */
export function sampleOntoGrid(mask: NiftiVolume, grid: Geometry, out: { length: number; [i: number]: number }): number {
  const [nx, ny, nz] = grid.dimensions;
  if (out.length !== nx * ny * nz) throw new Error(`the labelmap has ${out.length} voxels, the grid ${nx * ny * nz}`);
  const inv = invert4(mask.affine);
  const [mi, mj, mk] = mask.dimensions;
  const d = grid.direction;
  const s = grid.spacing;
  // grid index -> LPS -> RAS (x, y negated) -> mask index, as one affine: ras = A · (i, j, k, 1)
  const toRas = [0, 1, 2].map((a) => {
    const sign = a < 2 ? -1 : 1;
    return [d[a] * s[0] * sign, d[3 + a] * s[1] * sign, d[6 + a] * s[2] * sign, grid.origin[a] * sign];
  });
  const m = [0, 1, 2].map((r) => [0, 1, 2, 3].map((c) => inv[r][0] * toRas[0][c] + inv[r][1] * toRas[1][c] + inv[r][2] * toRas[2][c] + (c === 3 ? inv[r][3] : 0)));
  let set = 0;
  let index = 0;
  for (let k = 0; k < nz; k++)
    for (let j = 0; j < ny; j++)
      for (let i = 0; i < nx; i++, index++) {
        const u = Math.round(m[0][0] * i + m[0][1] * j + m[0][2] * k + m[0][3]);
        const v = Math.round(m[1][0] * i + m[1][1] * j + m[1][2] * k + m[1][3]);
        const w = Math.round(m[2][0] * i + m[2][1] * j + m[2][2] * k + m[2][3]);
        const inside = u >= 0 && v >= 0 && w >= 0 && u < mi && v < mj && w < mk && mask.data[u + mi * (v + mj * w)] !== 0;
        out[index] = inside ? 1 : 0;
        if (inside) set++;
      }
  return set;
}
