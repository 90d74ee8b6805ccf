import { afterEach, describe, expect, it, vi } from 'vitest';
import { viewerTimings } from './timings';

describe('viewerTimings', () => {
  afterEach(() => vi.unstubAllGlobals());

  it('marks ms since the viewer opened and publishes a copy for the browser tests (dev and e2e builds)', () => {
    const page: { __glioscopeTimings?: unknown } = {};
    vi.stubGlobal('window', page);
    let now = 1000;
    const timings = viewerTimings(1000, () => now);
    expect(timings.has('firstFrameMs')).toBe(false);
    now = 1234.4;
    timings.mark('firstFrameMs');
    expect(timings.has('firstFrameMs')).toBe(true);
    expect(page.__glioscopeTimings).toEqual({ firstFrameMs: 234 });
    const published = page.__glioscopeTimings;
    now = 2000.6;
    timings.mark('overlayMs');
    timings.saved({ encode: 5, post: 7 });
    expect(page.__glioscopeTimings).toEqual({ firstFrameMs: 234, overlayMs: 1001, save: { encode: 5, post: 7 } });
    expect(published).toEqual({ firstFrameMs: 234 }); // each publication is a copy
  });
});
