// The tumour surface for the 3D view: per segment, the labelled voxels' bounding box is cropped out
// of the labelmap (optionally at half resolution), turned into a triangle mesh by vtk.js's marching
// cubes in index space, and the points are mapped to LPS mm with the volume's full index→world
// transform (vtk.js's filter only knows origin and spacing, not the direction of oblique volumes).
import type { Geometry } from '../editing/labelmap';

export interface Box {
  min: [number, number, number];
  max: [number, number, number]; // inclusive
}

/** Bounding box of the voxels for which `match(label)` holds; null when there are none. */
export function boundingBox(labels: ArrayLike<number>, dims: [number, number, number], match: (label: number) => boolean): Box | null {
  const [nx, ny] = dims;
  const min: [number, number, number] = [Infinity, Infinity, Infinity];
  const max: [number, number, number] = [-1, -1, -1];
  let index = 0;
  for (let k = 0; k < dims[2]; k++)
    for (let j = 0; j < ny; j++)
      for (let i = 0; i < nx; i++, index++) {
        const v = labels[index];
        if (!v || !match(v)) continue;
        if (i < min[0]) min[0] = i;
        if (i > max[0]) max[0] = i;
        if (j < min[1]) min[1] = j;
        if (j > max[1]) max[1] = j;
        if (k < min[2]) min[2] = k;
        if (k > max[2]) max[2] = k;
      }
  return max[0] < 0 ? null : { min, max };
}

export interface Crop {
  data: Float32Array; // 1 inside, 0 outside, with a zero border so surfaces close
  dims: [number, number, number];
  offset: [number, number, number]; // index of crop voxel (0,0,0) in the full grid
  step: number; // voxels of the full grid per crop voxel
}

/**
 * The binary crop of `box` (padded by one crop voxel of zeros on each side), sampling every `step`-th
 * voxel (a crop voxel is inside when any of its step³ source voxels is).
 */
export function cropBinary(
  labels: ArrayLike<number>,
  dims: [number, number, number],
  box: Box,
  match: (label: number) => boolean,
  step = 1,
): Crop {
  const [nx, ny, nz] = dims;
  const size = [0, 1, 2].map((a) => Math.floor((box.max[a] - box.min[a]) / step) + 1 + 2) as [number, number, number];
  const offset = [0, 1, 2].map((a) => box.min[a] - step) as [number, number, number];
  const data = new Float32Array(size[0] * size[1] * size[2]);
  for (let k = box.min[2]; k <= box.max[2]; k++)
    for (let j = box.min[1]; j <= box.max[1]; j++) {
      const row = j * nx + k * nx * ny;
      for (let i = box.min[0]; i <= box.max[0]; i++) {
        const v = labels[row + i];
        if (!v || !match(v)) continue;
        const ci = Math.floor((i - box.min[0]) / step) + 1;
        const cj = Math.floor((j - box.min[1]) / step) + 1;
        const ck = Math.floor((k - box.min[2]) / step) + 1;
        data[ci + cj * size[0] + ck * size[0] * size[1]] = 1;
      }
    }
  void nz;
  return { data, dims: size, offset, step };
}

/** Crop index-space points (x,y,z triples, in place) → LPS mm on `grid`. */
export function cropPointsToWorld(points: Float32Array | number[], crop: Pick<Crop, 'offset' | 'step'>, grid: Geometry): void {
  const d = grid.direction;
  const [sx, sy, sz] = grid.spacing;
  for (let p = 0; p < points.length; p += 3) {
    const i = crop.offset[0] + points[p] * crop.step;
    const j = crop.offset[1] + points[p + 1] * crop.step;
    const k = crop.offset[2] + points[p + 2] * crop.step;
    for (let a = 0; a < 3; a++) points[p + a] = grid.origin[a] + i * sx * d[a] + j * sy * d[3 + a] + k * sz * d[6 + a];
  }
}

/** Half resolution once the box holds more than this many voxels (software WebGL, 2 cores). */
export const FULL_RESOLUTION_LIMIT = 96 ** 3;

export function stepFor(box: Box): number {
  const n = (box.max[0] - box.min[0] + 1) * (box.max[1] - box.min[1] + 1) * (box.max[2] - box.min[2] + 1);
  return n > FULL_RESOLUTION_LIMIT ? 2 : 1;
}
