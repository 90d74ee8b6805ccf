// The 3D view of the tumour surface, built once the MPR overlay is on screen (it must not delay it);
// `buildSurface` builds it again (after strokes, a save, a version switch).
import { useCallback, useEffect, useRef, useState } from 'react';
import { Enums, cache, type Types } from '@cornerstonejs/core';
import { ToolGroupManager } from '@cornerstonejs/tools';
import { geometryOf } from '../editing/labelmap';
import { TOOL_GROUP_3D_ID, renderingEngine } from './cornerstone';
import { LABELMAP_ID, VIEW_3D, type LabelVolume, type ViewportElements } from './constants';
import type { Segment } from './dicomSeg';
import type { ViewerTimings } from './timings';

export interface SurfaceState {
  state: 'idle' | 'building' | 'ready' | 'failed';
  triangles?: number;
  message?: string;
}

export function useSurface3d(options: {
  elements: ViewportElements;
  overlayReady: boolean;
  segments: Segment[];
  hidden: Set<number>;
  timings: ViewerTimings;
}) {
  const { elements, overlayReady, segments, hidden, timings } = options;
  const [surface, setSurface] = useState<SurfaceState>({ state: 'idle' });
  const segmentsRef = useRef<Segment[]>([]);
  segmentsRef.current = segments;
  const hiddenRef = useRef(hidden);
  hiddenRef.current = hidden;

  const buildSurface = useCallback(async () => {
    const labelmap = cache.getVolume(LABELMAP_ID) as LabelVolume | undefined;
    const element = elements.current[VIEW_3D];
    if (!labelmap || !element) return;
    setSurface({ state: 'building' });
    const started = performance.now();
    try {
      const { surfaceActors } = await import('./surface3d');
      const engine = renderingEngine();
      if (!engine.getViewport(VIEW_3D)) {
        engine.enableElement({
          viewportId: VIEW_3D,
          type: Enums.ViewportType.VOLUME_3D,
          element,
          defaultOptions: { orientation: Enums.OrientationAxis.CORONAL, background: [0.05, 0.06, 0.08] as Types.Point3 },
        });
        ToolGroupManager.getToolGroup(TOOL_GROUP_3D_ID)?.addViewport(VIEW_3D, engine.id);
      }
      const viewport = engine.getViewport(VIEW_3D) as Types.IVolumeViewport;
      const actors = surfaceActors(labelmap.voxelManager.getCompleteScalarDataArray(), geometryOf(labelmap), segmentsRef.current);
      viewport.removeAllActors();
      if (actors.length) viewport.addActors(actors.map(({ uid, actor }) => ({ uid, actor: actor as unknown as Types.Actor })));
      for (const { actor, segment } of actors) actor.setVisibility(!hiddenRef.current.has(segment));
      viewport.resetCamera();
      viewport.render();
      const triangles = actors.reduce((a, s) => a + s.triangles, 0);
      if (!timings.has('surfaceMs')) timings.mark('surfaceMs');
      setSurface({ state: 'ready', triangles, message: `${Math.round(performance.now() - started)} ms` });
    } catch (e) {
      setSurface({ state: 'failed', message: (e as Error).message });
    }
  }, []);

  useEffect(() => {
    if (!overlayReady) return;
    const timer = setTimeout(() => void buildSurface(), 300);
    return () => clearTimeout(timer);
  }, [overlayReady, buildSurface]);

  return { surface, buildSurface };
}
