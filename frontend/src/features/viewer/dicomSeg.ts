// A DICOM-SEG (BINARY or LABELMAP, as Glioscope's worker writes it) → a label volume on a target grid.
// The frames are placed by their own plane positions, so the target may be any volume of the study's
// frame of reference (the SEG is written on the T1c grid).
import dicomParser from 'dicom-parser';

export interface Segment {
  number: number;
  label: string;
  rgb: [number, number, number];
}

export interface SegFrame {
  segmentNumber: number;
  position: [number, number, number];
}

export interface ParsedSeg {
  rows: number;
  columns: number;
  rowCosines: [number, number, number]; // direction of increasing column index
  columnCosines: [number, number, number]; // direction of increasing row index
  pixelSpacing: [number, number]; // [between rows, between columns] in mm
  segments: Segment[];
  frames: SegFrame[];
  segmentationType: string;
  bitsAllocated: number;
  pixelData: Uint8Array;
}

export interface Grid {
  dimensions: [number, number, number];
  spacing: [number, number, number]; // [x (columns), y (rows), z (slices)]
  origin: [number, number, number];
  direction: ArrayLike<number>; // 9 numbers: row cosines, column cosines, normal
}

/** DICOM CIELab (0..65535 scaled) → sRGB 0..255, as PS3.3 C.10.7.1.1 defines it (D65 white). */
export function dicomLabToRgb(lab: [number, number, number]): [number, number, number] {
  const L = (lab[0] / 65535) * 100;
  const a = (lab[1] / 65535) * 255 - 128;
  const b = (lab[2] / 65535) * 255 - 128;
  const fy = (L + 16) / 116;
  const fx = fy + a / 500;
  const fz = fy - b / 200;
  const finv = (t: number) => (t > 6 / 29 ? t ** 3 : 3 * (6 / 29) ** 2 * (t - 4 / 29));
  const X = 0.950456 * finv(fx);
  const Y = 1.0 * finv(fy);
  const Z = 1.088754 * finv(fz);
  const lin = [
    3.2404542 * X - 1.5371385 * Y - 0.4985314 * Z,
    -0.969266 * X + 1.8760108 * Y + 0.041556 * Z,
    0.0556434 * X - 0.2040259 * Y + 1.0572252 * Z,
  ];
  const gamma = (c: number) => (c <= 0.0031308 ? 12.92 * c : 1.055 * c ** (1 / 2.4) - 0.055);
  return lin.map((c) => Math.round(Math.max(0, Math.min(1, gamma(c))) * 255)) as [number, number, number];
}

function numbers(ds: dicomParser.DataSet, tag: string, count: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    const v = ds.floatString(tag, i);
    if (v === undefined) throw new Error(`DICOM-SEG: ${tag}[${i}] missing`);
    out.push(v);
  }
  return out;
}

function firstItem(ds: dicomParser.DataSet | undefined, tag: string): dicomParser.DataSet | undefined {
  return ds?.elements[tag]?.items?.[0]?.dataSet;
}

export function parseSeg(buffer: ArrayBuffer): ParsedSeg {
  const ds = dicomParser.parseDicom(new Uint8Array(buffer));
  const rows = ds.uint16('x00280010')!;
  const columns = ds.uint16('x00280011')!;
  const bitsAllocated = ds.uint16('x00280100') ?? 1;
  const segmentationType = ds.string('x00620001') ?? 'BINARY';
  const segments: Segment[] = (ds.elements.x00620002?.items ?? []).map((item) => {
    const s = item.dataSet!;
    const lab = s.elements.x0062000d ? [0, 1, 2].map((i) => s.uint16('x0062000d', i) ?? 0) : null;
    return {
      number: s.uint16('x00620004')!,
      label: s.string('x00620005') ?? '',
      rgb: lab ? dicomLabToRgb(lab as [number, number, number]) : [255, 0, 0],
    };
  });
  const shared = ds.elements.x52009229?.items?.[0]?.dataSet;
  const perFrame = ds.elements.x52009230?.items ?? [];
  const orientationOf = (group?: dicomParser.DataSet) => firstItem(group, 'x00209116');
  const measuresOf = (group?: dicomParser.DataSet) => firstItem(group, 'x00289110');
  const orientationDs = orientationOf(shared) ?? orientationOf(perFrame[0]?.dataSet);
  const measuresDs = measuresOf(shared) ?? measuresOf(perFrame[0]?.dataSet);
  if (!orientationDs || !measuresDs) throw new Error('DICOM-SEG: no plane orientation or pixel measures');
  const iop = numbers(orientationDs, 'x00200037', 6);
  const spacing = numbers(measuresDs, 'x00280030', 2);
  const frames: SegFrame[] = perFrame.map((item, index) => {
    const f = item.dataSet!;
    const position = firstItem(f, 'x00209113');
    const identification = firstItem(f, 'x0062000a');
    if (!position) throw new Error(`DICOM-SEG: frame ${index + 1} has no plane position`);
    return {
      segmentNumber: identification?.uint16('x0062000b') ?? 1,
      position: numbers(position, 'x00200032', 3) as [number, number, number],
    };
  });
  const pixel = ds.elements.x7fe00010;
  if (!pixel) throw new Error('DICOM-SEG: no pixel data');
  if (pixel.encapsulatedPixelData) throw new Error('DICOM-SEG: compressed segmentations are not supported');
  return {
    rows,
    columns,
    rowCosines: iop.slice(0, 3) as [number, number, number],
    columnCosines: iop.slice(3, 6) as [number, number, number],
    pixelSpacing: spacing as [number, number],
    segments,
    frames,
    segmentationType,
    bitsAllocated,
    pixelData: new Uint8Array(ds.byteArray.buffer, ds.byteArray.byteOffset + pixel.dataOffset, pixel.length),
  };
}

/** Value of pixel `p` of frame `f`: BINARY frames are bit-packed end to end (LSB first). */
export function frameValue(seg: ParsedSeg, frame: number, pixelIndex: number): number {
  const perFrame = seg.rows * seg.columns;
  if (seg.bitsAllocated === 1) {
    const bit = frame * perFrame + pixelIndex;
    return (seg.pixelData[bit >> 3] >> (bit & 7)) & 1;
  }
  return seg.pixelData[frame * perFrame + pixelIndex];
}

/**
 * Rasterise the SEG onto `grid` (nearest voxel) as segment numbers, index i + j*nx + k*nx*ny.
 * Returns the number of voxels set per segment.
 */
export function rasterise(seg: ParsedSeg, grid: Grid, out: { length: number; [i: number]: number }): Map<number, number> {
  const [nx, ny, nz] = grid.dimensions;
  const d = grid.direction;
  const axes = [
    [d[0], d[1], d[2]],
    [d[3], d[4], d[5]],
    [d[6], d[7], d[8]],
  ];
  const counts = new Map<number, number>();
  const [rowSpacing, columnSpacing] = seg.pixelSpacing;
  // world = position + c*columnSpacing*rowCosines + r*rowSpacing*columnCosines; ijk = axes·(world-origin)/spacing
  const stepC = axes.map((a, n) => (columnSpacing * dot(a, seg.rowCosines)) / grid.spacing[n]);
  const stepR = axes.map((a, n) => (rowSpacing * dot(a, seg.columnCosines)) / grid.spacing[n]);
  seg.frames.forEach((frame, f) => {
    const rel = [0, 1, 2].map((n) => frame.position[n] - grid.origin[n]);
    const base = axes.map((a, n) => dot(a, rel) / grid.spacing[n]);
    const labelled = seg.segmentationType === 'LABELMAP';
    for (let r = 0; r < seg.rows; r++) {
      for (let c = 0; c < seg.columns; c++) {
        const value = frameValue(seg, f, r * seg.columns + c);
        if (!value) continue;
        const i = Math.round(base[0] + c * stepC[0] + r * stepR[0]);
        const j = Math.round(base[1] + c * stepC[1] + r * stepR[1]);
        const k = Math.round(base[2] + c * stepC[2] + r * stepR[2]);
        if (i < 0 || j < 0 || k < 0 || i >= nx || j >= ny || k >= nz) continue;
        const segment = labelled ? value : frame.segmentNumber;
        out[i + j * nx + k * nx * ny] = segment;
        counts.set(segment, (counts.get(segment) ?? 0) + 1);
      }
    }
  });
  return counts;
}

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  return a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
}
