// Small pieces of the viewer with no React state: waiting for a Cornerstone event, the tumour's
// centroid, moving a slice through a point, the viewports as one PNG.
import type { Types } from '@cornerstonejs/core';
import { MPR_IDS, VIEW_3D, type ViewportElements } from './constants';

/** Resolves true at the next `type` event whose detail passes `accept`, false after `timeoutMs`. */
export function nextEvent(
  target: EventTarget,
  type: string,
  accept: (detail: { viewportId?: string; segmentationId?: string } | undefined) => boolean,
  timeoutMs: number,
): Promise<boolean> {
  return new Promise((resolve) => {
    const done = (value: boolean) => {
      clearTimeout(timer);
      target.removeEventListener(type, listener);
      resolve(value);
    };
    const listener = (evt: Event) => accept((evt as CustomEvent).detail) && done(true);
    const timer = setTimeout(() => done(false), timeoutMs);
    target.addEventListener(type, listener);
  });
}

/** The centroid of the labelled voxels in world coordinates (null when empty). */
export function centroidWorld(data: Uint8Array, volume: Types.IImageVolume): Types.Point3 | null {
  const [nx, ny] = volume.dimensions;
  let n = 0;
  const sum = [0, 0, 0];
  for (let index = 0; index < data.length; index++) {
    if (!data[index]) continue;
    n++;
    sum[0] += index % nx;
    sum[1] += Math.floor(index / nx) % ny;
    sum[2] += Math.floor(index / (nx * ny));
  }
  if (!n) return null;
  const d = volume.direction;
  const s = volume.spacing;
  const ijk = sum.map((v) => v / n);
  return [0, 1, 2].map((a) => volume.origin[a] + ijk[0] * s[0] * d[a] + ijk[1] * s[1] * d[3 + a] + ijk[2] * s[2] * d[6 + a]) as Types.Point3;
}

/** Move a viewport's slice (along its normal only, keeping the in-plane pan) through `point`. */
export function sliceThrough(viewport: Types.IVolumeViewport | undefined, point: Types.Point3): void {
  if (!viewport) return;
  const camera = viewport.getCamera();
  const normal = camera.viewPlaneNormal!;
  const focal = camera.focalPoint!;
  const distance = [0, 1, 2].reduce((acc, a) => acc + (point[a] - focal[a]) * normal[a], 0);
  const shift = (p: Types.Point3) => p.map((v, a) => v + distance * normal[a]) as Types.Point3;
  viewport.setCamera({ focalPoint: shift(focal), position: shift(camera.position!) });
}

/** The four viewports as one PNG, two by two (for the report). */
export async function captureViewports(elements: ViewportElements): Promise<Blob> {
  const canvases = [...MPR_IDS, VIEW_3D]
    .map((id) => elements.current[id]?.querySelector('canvas'))
    .filter((c): c is HTMLCanvasElement => !!c && c.width > 0);
  if (!canvases.length) throw new Error('no viewport is on screen');
  const cellW = Math.max(...canvases.map((c) => c.width));
  const cellH = Math.max(...canvases.map((c) => c.height));
  const columns = Math.min(2, canvases.length);
  const out = document.createElement('canvas');
  out.width = cellW * columns;
  out.height = cellH * Math.ceil(canvases.length / columns);
  const ctx = out.getContext('2d')!;
  ctx.fillStyle = '#000';
  ctx.fillRect(0, 0, out.width, out.height);
  canvases.forEach((c, n) => ctx.drawImage(c, (n % columns) * cellW, Math.floor(n / columns) * cellH));
  return new Promise((resolve, reject) => out.toBlob((b) => (b ? resolve(b) : reject(new Error('the screenshot could not be encoded'))), 'image/png'));
}
