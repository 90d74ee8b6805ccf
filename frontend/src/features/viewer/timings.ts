// How long the viewer took, in ms since it opened: the first MPR frame, the whole volume, the overlay,
// the 3D surface and the last save's steps. Published as `window.__glioscopeTimings` for the browser
// tests and benchmarks (frontend/e2e/viewer.spec.mjs) only in the dev server and in the e2e build
// (`npm run build:e2e`, i.e. `vite build --mode e2e`): never in the production bundle.
import { useState } from 'react';

export interface Timings {
  firstFrameMs?: number;
  volumeLoadedMs?: number;
  overlayMs?: number;
  surfaceMs?: number;
  save?: Record<string, number>; // the last save's steps, ms
}

export type TimingMark = 'firstFrameMs' | 'volumeLoadedMs' | 'overlayMs' | 'surfaceMs';

export interface ViewerTimings {
  /** Whether `key` was marked already. */
  has(key: TimingMark): boolean;
  /** `key` := now, since the viewer opened; published. */
  mark(key: TimingMark): void;
  /** The last save's steps; published. */
  saved(steps: Record<string, number>): void;
}

// Both are literals once Vite has built the bundle: a production build leaves the branch below,
// and the global's name with it, out.
const PUBLISH = import.meta.env.DEV || import.meta.env.MODE === 'e2e';

function publishTimings(t: Timings): void {
  if (PUBLISH) (window as unknown as { __glioscopeTimings: Timings }).__glioscopeTimings = { ...t };
}

export function viewerTimings(opened: number, now: () => number = () => performance.now()): ViewerTimings {
  const timings: Timings = {};
  return {
    has: (key) => timings[key] !== undefined,
    mark: (key) => {
      timings[key] = Math.round(now() - opened);
      publishTimings(timings);
    },
    saved: (steps) => {
      timings.save = steps;
      publishTimings(timings);
    },
  };
}

/** The viewer's timings, from its first render on. */
export function useTimings(): ViewerTimings {
  const [timings] = useState(() => viewerTimings(performance.now()));
  return timings;
}
