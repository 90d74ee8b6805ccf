// The edited labelmap as the gateway's `POST /api/studies/{uid}/segmentation/versions` expects it:
// Cornerstone3D's volume convention (LPS mm; voxel (i,j,k) at index i + j*nx + k*nx*ny, position
// origin + i*sx*direction[0:3] + j*sy*direction[3:6] + k*sz*direction[6:9]), labels 0–3 as uint8,
// gzip (CompressionStream) then base64.

export interface Geometry {
  dimensions: [number, number, number];
  spacing: [number, number, number];
  origin: [number, number, number];
  direction: number[]; // 9 numbers
}

export interface NewVersionBody {
  base_version: number;
  source_series_instance_uid: string;
  geometry: Geometry;
  labels: string;
}

/** The geometry of a Cornerstone volume (plain arrays, JSON-ready). */
export function geometryOf(volume: {
  dimensions: ArrayLike<number>;
  spacing: ArrayLike<number>;
  origin: ArrayLike<number>;
  direction: ArrayLike<number>;
}): Geometry {
  const three = (a: ArrayLike<number>) => [Number(a[0]), Number(a[1]), Number(a[2])] as [number, number, number];
  const direction = Array.from(volume.direction, Number);
  if (direction.length !== 9) throw new Error(`a volume direction has 9 numbers, not ${direction.length}`);
  return { dimensions: three(volume.dimensions), spacing: three(volume.spacing), origin: three(volume.origin), direction };
}

/** Labels as uint8 (0–3). Anything else in the labelmap is refused rather than silently wrapped. */
export function toLabels(data: ArrayLike<number>, expected: number, maxLabel = 3): Uint8Array {
  if (data.length !== expected) throw new Error(`the labelmap has ${data.length} voxels, the grid ${expected}`);
  if (data instanceof Uint8Array) {
    for (let i = 0; i < data.length; i++) if (data[i] > maxLabel) throw new Error(`label ${data[i]} at voxel ${i} (0–${maxLabel} allowed)`);
    return data;
  }
  const out = new Uint8Array(data.length);
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (v < 0 || v > maxLabel || !Number.isInteger(v)) throw new Error(`label ${v} at voxel ${i} (0–${maxLabel} allowed)`);
    out[i] = v;
  }
  return out;
}

/** Voxels per label (1..maxLabel), as the versions list reports them. */
export function voxelCounts(labels: ArrayLike<number>, maxLabel = 3): Record<string, number> {
  const counts = new Array<number>(maxLabel + 1).fill(0);
  for (let i = 0; i < labels.length; i++) {
    const v = labels[i];
    if (v > 0 && v <= maxLabel) counts[v]++;
  }
  return Object.fromEntries(counts.slice(1).map((n, i) => [String(i + 1), n]));
}

async function pipe(bytes: Uint8Array, stream: CompressionStream | DecompressionStream): Promise<Uint8Array> {
  const body = new Blob([bytes]).stream().pipeThrough(stream);
  return new Uint8Array(await new Response(body).arrayBuffer());
}

export const gzip = (bytes: Uint8Array) => pipe(bytes, new CompressionStream('gzip'));
export const gunzip = (bytes: Uint8Array) => pipe(bytes, new DecompressionStream('gzip'));

/** Base64 of bytes, in chunks (String.fromCharCode(...big) overflows the stack). */
export function toBase64(bytes: Uint8Array): string {
  let binary = '';
  const chunk = 0x8000;
  for (let i = 0; i < bytes.length; i += chunk) binary += String.fromCharCode(...bytes.subarray(i, i + chunk));
  return btoa(binary);
}

export function fromBase64(text: string): Uint8Array {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

export async function encodeLabels(labels: Uint8Array): Promise<string> {
  return toBase64(await gzip(labels));
}

export async function newVersionBody(
  baseVersion: number,
  sourceSeriesUid: string,
  geometry: Geometry,
  data: ArrayLike<number>,
): Promise<NewVersionBody> {
  const [nx, ny, nz] = geometry.dimensions;
  const labels = toLabels(data, nx * ny * nz);
  return { base_version: baseVersion, source_series_instance_uid: sourceSeriesUid, geometry, labels: await encodeLabels(labels) };
}

/** World position (LPS mm) of voxel (i, j, k), the contract's formula (for tests and the 3D view). */
export function voxelToWorld(g: Geometry, i: number, j: number, k: number): [number, number, number] {
  const d = g.direction;
  const [sx, sy, sz] = g.spacing;
  return [0, 1, 2].map((a) => g.origin[a] + i * sx * d[a] + j * sy * d[3 + a] + k * sz * d[6 + a]) as [number, number, number];
}
