import { describe, expect, it } from 'vitest';
import { boundingBox, cropBinary, cropPointsToWorld, stepFor } from './surface';

describe('tumour surface input', () => {
  const dims: [number, number, number] = [5, 4, 3];
  const labels = new Uint8Array(60);
  labels[1 + 2 * 5 + 1 * 20] = 2; // (1,2,1)
  labels[3 + 1 * 5 + 2 * 20] = 2; // (3,1,2)
  labels[4 + 3 * 5 + 0 * 20] = 1; // (4,3,0)

  it('finds the bounding box of one segment', () => {
    expect(boundingBox(labels, dims, (v) => v === 2)).toEqual({ min: [1, 1, 1], max: [3, 2, 2] });
    expect(boundingBox(labels, dims, (v) => v === 3)).toBeNull();
  });

  it('crops with a zero border and keeps the voxels in place', () => {
    const box = boundingBox(labels, dims, (v) => v === 2)!;
    const crop = cropBinary(labels, dims, box, (v) => v === 2);
    expect(crop.dims).toEqual([5, 4, 4]);
    expect(crop.offset).toEqual([0, 0, 0]);
    const at = (i: number, j: number, k: number) => crop.data[i + j * crop.dims[0] + k * crop.dims[0] * crop.dims[1]];
    expect(at(1, 2, 1)).toBe(1); // the same index as in the full grid, as the offset is 0
    expect(at(3, 1, 2)).toBe(1);
    expect(Array.from(crop.data).reduce((a, b) => a + b, 0)).toBe(2);
  });

  it('maps crop points to LPS mm through the full direction, offset and step', () => {
    const grid = { dimensions: dims, spacing: [2, 1, 1] as [number, number, number], origin: [100, 0, 0] as [number, number, number], direction: [0, 1, 0, 1, 0, 0, 0, 0, -1] };
    const points = [1, 0, 0, 0, 0, 1];
    cropPointsToWorld(points, { offset: [1, 2, 3], step: 2 }, grid);
    // (1,0,0) → voxel (3,2,3): 3*2 along +y, 2*1 along +x, 3*1 along -z
    expect(points.slice(0, 3)).toEqual([102, 6, -3]);
    expect(points.slice(3)).toEqual([102, 2, -5]);
  });

  it('halves the resolution of big boxes only', () => {
    expect(stepFor({ min: [0, 0, 0], max: [9, 9, 9] })).toBe(1);
    expect(stepFor({ min: [0, 0, 0], max: [199, 199, 199] })).toBe(2);
  });
});
