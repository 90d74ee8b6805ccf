// The chosen series (sequence) in the three MPR viewports: its volume streamed in, the first frame and
// the whole volume timed, the labelmaps drawn again on top, the slices through the tumour's centre.
import { useEffect, useRef, useState, type MutableRefObject } from 'react';
import { Enums, cache, eventTarget, setVolumesForViewports, type Types } from '@cornerstonejs/core';
import { segmentation, utilities as toolUtilities } from '@cornerstonejs/tools';
import type { Api, Study } from '../api/client';
import { ensureVolume, initCornerstone, renderingEngine, seriesImageIds, volumeIdFor } from './cornerstone';
import { MPR_IDS, SEG_ID, type ViewportElements } from './constants';
import type { VoiRange } from './presets';
import type { ViewerTimings } from './timings';
import { BRAIN_SEG_ID } from './useBrainMaskOutline';
import { sliceThrough } from './viewerHelpers';

export function useSeriesDisplay(options: {
  api: Api;
  study: Study | null;
  sequence: string;
  seriesByRole: Record<string, string>;
  elements: ViewportElements;
  timings: ViewerTimings;
  baseVoi: MutableRefObject<VoiRange | null>;
  setError: (message: string) => void;
}) {
  const { api, study, sequence, seriesByRole, elements, timings, baseVoi, setError } = options;
  const [status, setStatus] = useState('Loading the study…');
  const [frameReady, setFrameReady] = useState(false);
  // settles once the viewports show the chosen series (setVolumesForViewports resets their cameras)
  const viewportsShown = useRef<Promise<void>>(Promise.resolve());
  const tumourCentre = useRef<Types.Point3 | null>(null);

  useEffect(() => {
    if (!study) return;
    const seriesUid = seriesByRole[sequence] ?? study.series.find((s) => s.modality === 'MR')?.series_instance_uid;
    if (!seriesUid) {
      setStatus('This study has no MR series to show.');
      return;
    }
    let cancelled = false;
    let shown = () => {};
    viewportsShown.current = new Promise<void>((resolve) => (shown = resolve));
    const engine = renderingEngine();
    const volumeId = volumeIdFor(seriesUid);
    const onRendered = () => {
      const volume = cache.getVolume(volumeId) as unknown as { loadStatus?: { framesProcessed?: number } } | undefined;
      if (!timings.has('firstFrameMs') && (volume?.loadStatus?.framesProcessed ?? 1) > 0) {
        timings.mark('firstFrameMs');
        setFrameReady(true);
      }
    };
    const onLoaded = (evt: Event) => {
      const detail = (evt as CustomEvent).detail as { volumeId?: string };
      if (detail?.volumeId !== volumeId) return;
      if (!timings.has('volumeLoadedMs')) timings.mark('volumeLoadedMs');
      setStatus('');
    };
    (async () => {
      try {
        await initCornerstone();
        setStatus(`Loading ${sequence}…`);
        eventTarget.addEventListener(Enums.Events.IMAGE_VOLUME_LOADING_COMPLETED, onLoaded);
        const volume = await ensureVolume(volumeId, () =>
          seriesImageIds(study.study_instance_uid, seriesUid, (p) => api.request(p, { headers: { accept: 'application/dicom+json' } })),
        );
        if (cancelled) return;
        elements.current.axial?.addEventListener(Enums.Events.IMAGE_RENDERED, onRendered);
        await setVolumesForViewports(engine, [{ volumeId }], MPR_IDS);
        // a new volume replaces the viewports' actors: the labelmap is drawn again on top of it
        for (const id of [SEG_ID, BRAIN_SEG_ID]) if (segmentation.state.getSegmentation(id)) toolUtilities.segmentation.triggerSegmentationRenderBySegmentationId(id);
        baseVoi.current = null;
        const centre = tumourCentre.current;
        if (centre) for (const id of MPR_IDS) sliceThrough(engine.getViewport(id) as Types.IVolumeViewport, centre);
        shown();
        engine.renderViewports(MPR_IDS);
        if ((volume as unknown as { loadStatus?: { loaded?: boolean } }).loadStatus?.loaded) onLoaded(new CustomEvent('x', { detail: { volumeId } }));
      } catch (e) {
        if (!cancelled) setError(`The images could not be loaded: ${(e as Error).message}`);
      } finally {
        shown();
      }
    })();
    return () => {
      cancelled = true;
      shown();
      eventTarget.removeEventListener(Enums.Events.IMAGE_VOLUME_LOADING_COMPLETED, onLoaded);
      elements.current.axial?.removeEventListener(Enums.Events.IMAGE_RENDERED, onRendered);
    };
  }, [api, study, sequence, seriesByRole]);

  return { status, frameReady, viewportsShown, tumourCentre };
}
