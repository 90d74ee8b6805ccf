import { describe, expect, it } from 'vitest';
import { DEFAULT_FILL_ALPHA, opacityOf, segmentFillStyle } from './segmentStyle';

describe('segment fill opacity', () => {
  it('sets the active and inactive fill alike', () => {
    expect(segmentFillStyle(0.3)).toEqual({ fillAlpha: 0.3, fillAlphaInactive: 0.3 });
    expect(segmentFillStyle(0)).toEqual({ fillAlpha: 0, fillAlphaInactive: 0 });
  });
  it('clamps to 0…1 and falls back to the default', () => {
    expect(segmentFillStyle(1.7).fillAlpha).toBe(1);
    expect(segmentFillStyle(-2).fillAlpha).toBe(0);
    expect(segmentFillStyle(Number.NaN).fillAlpha).toBe(DEFAULT_FILL_ALPHA);
  });
  it('a segment without its own opacity has the default', () => {
    expect(opacityOf({ 2: 0.1 }, 2)).toBe(0.1);
    expect(opacityOf({ 2: 0.1 }, 1)).toBe(DEFAULT_FILL_ALPHA);
    expect(opacityOf({ 3: 0 }, 3)).toBe(0);
  });
});
