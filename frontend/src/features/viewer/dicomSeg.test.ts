import { describe, expect, it } from 'vitest';
import { dicomLabToRgb, frameValue, rasterise, type ParsedSeg } from './dicomSeg';

function seg(overrides: Partial<ParsedSeg> = {}): ParsedSeg {
  // 2 frames of 2x4, BINARY, bit-packed end to end, LSB first
  return {
    rows: 2,
    columns: 4,
    rowCosines: [1, 0, 0],
    columnCosines: [0, 1, 0],
    pixelSpacing: [1, 1],
    segments: [],
    frames: [
      { segmentNumber: 2, position: [0, 0, 0] },
      { segmentNumber: 3, position: [0, 0, 2] },
    ],
    segmentationType: 'BINARY',
    bitsAllocated: 1,
    pixelData: new Uint8Array([0b0000_0001, 0b1000_0000]),
    ...overrides,
  };
}

describe('DICOM-SEG', () => {
  it('reads bit-packed frames across frame boundaries', () => {
    const s = seg();
    expect(frameValue(s, 0, 0)).toBe(1);
    expect(frameValue(s, 0, 1)).toBe(0);
    expect(frameValue(s, 1, 7)).toBe(1); // bit 15
  });

  it('places frames on the target grid by their positions', () => {
    const out = new Uint8Array(4 * 2 * 3);
    const counts = rasterise(seg(), { dimensions: [4, 2, 3], spacing: [1, 1, 1], origin: [0, 0, 0], direction: [1, 0, 0, 0, 1, 0, 0, 0, 1] }, out);
    expect(out[0]).toBe(2);
    expect(out[3 + 1 * 4 + 2 * 8]).toBe(3);
    expect([...counts.entries()]).toEqual([[2, 1], [3, 1]]);
  });

  it('maps onto a coarser, shifted grid and drops what falls outside', () => {
    const out = new Uint8Array(2 * 1 * 2);
    rasterise(seg(), { dimensions: [2, 1, 2], spacing: [2, 2, 2], origin: [0, 0, 0], direction: [1, 0, 0, 0, 1, 0, 0, 0, 1] }, out);
    expect(Array.from(out)).toEqual([2, 0, 0, 0]); // frame 2 pixel (1,3) lands at i=2, j=1: outside
  });

  it('converts DICOM CIELab to sRGB', () => {
    // white: L=100, a=b=0 → 65535, 32896, 32896
    expect(dicomLabToRgb([65535, 32896, 32896])).toEqual([255, 255, 255]);
    const red = dicomLabToRgb([Math.round((53.24 / 100) * 65535), Math.round(((80.09 + 128) / 255) * 65535), Math.round(((67.2 + 128) / 255) * 65535)]);
    expect(red[0]).toBeGreaterThan(250);
    expect(red[1]).toBeLessThan(10);
  });
});
