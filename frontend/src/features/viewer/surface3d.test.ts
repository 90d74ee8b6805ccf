import { describe, expect, it } from 'vitest';
import { voxelToWorld, type Geometry } from '../editing/labelmap';
import { surfaceActors } from './surface3d';

describe('tumour surface meshes', () => {
  it('puts each segment’s closed mesh around its voxels in LPS mm on an oblique grid', () => {
    const c = Math.cos(Math.PI / 9);
    const s = Math.sin(Math.PI / 9);
    const grid: Geometry = { dimensions: [20, 16, 12], spacing: [1, 1.5, 2], origin: [-30, 12, 5], direction: [c, s, 0, -s, c, 0, 0, 0, 1] };
    const labels = new Uint8Array(20 * 16 * 12);
    const index = (i: number, j: number, k: number) => i + j * 20 + k * 20 * 16;
    for (let k = 4; k <= 7; k++) for (let j = 5; j <= 9; j++) for (let i = 6; i <= 12; i++) labels[index(i, j, k)] = 2;
    labels[index(9, 7, 6)] = 1;
    const actors = surfaceActors(labels, grid, [
      { number: 1, label: 'core', rgb: [255, 0, 0] },
      { number: 2, label: 'oedema', rgb: [0, 255, 0] },
      { number: 3, label: 'absent', rgb: [0, 0, 255] },
    ]);
    expect(actors.map((a) => a.segment)).toEqual([1, 2]);
    expect(actors.every((a) => a.triangles > 0)).toBe(true);
    // the oedema (most voxels) is translucent
    expect(actors.find((a) => a.segment === 2)!.actor.getProperty().getOpacity()).toBeLessThan(1);
    // every mesh point lies within one voxel of the segment's voxels (in the grid's own index frame)
    const points = actors.find((a) => a.segment === 2)!.actor.getMapper()!.getInputData().getPoints().getData() as Float32Array;
    const toIndex = (p: number[]) => {
      const rel = p.map((v, a) => v - grid.origin[a]);
      return [0, 1, 2].map((n) => (rel[0] * grid.direction[3 * n] + rel[1] * grid.direction[3 * n + 1] + rel[2] * grid.direction[3 * n + 2]) / grid.spacing[n]);
    };
    for (let p = 0; p < points.length; p += 3) {
      const [i, j, k] = toIndex([points[p], points[p + 1], points[p + 2]]);
      expect(i).toBeGreaterThan(5 - 1e-3);
      expect(i).toBeLessThan(13 + 1e-3);
      expect(j).toBeGreaterThan(4 - 1e-3);
      expect(j).toBeLessThan(10 + 1e-3);
      expect(k).toBeGreaterThan(3 - 1e-3);
      expect(k).toBeLessThan(8 + 1e-3);
    }
    // the centre of the mesh is the centre of the block
    const centre = [0, 1, 2].map((a) => {
      let sum = 0;
      for (let p = a; p < points.length; p += 3) sum += points[p];
      return sum / (points.length / 3);
    });
    const expected = voxelToWorld(grid, 9, 7, 5.5);
    centre.forEach((v, a) => expect(Math.abs(v - expected[a])).toBeLessThan(0.6));
  });
});
