// The tumour overlay: the DICOM-SEG (prefetched at open) rasterised onto a labelmap derived from the
// T1c volume, drawn in the three MPR views, the slices moved through the tumour's centre.
import { useCallback, useEffect, useState, type MutableRefObject } from 'react';
import { Enums, cache, eventTarget, volumeLoader, type Types } from '@cornerstonejs/core';
import { Enums as ToolEnums, segmentation } from '@cornerstonejs/tools';
import type { Api, Study } from '../api/client';
import { geometryOf } from '../editing/labelmap';
import { ensureVolume, initCornerstone, renderingEngine, seriesImageIds, volumeIdFor } from './cornerstone';
import { LABELMAP, LABELMAP_ID, MPR_IDS, SEG_ID, type LabelVolume, type ViewportElements } from './constants';
import { parseSeg, rasterise, type Segment } from './dicomSeg';
import { takeSeg } from './segPrefetch';
import { DEFAULT_FILL_ALPHA } from './segmentStyle';
import type { ViewerTimings } from './timings';
import { centroidWorld, nextEvent, sliceThrough } from './viewerHelpers';

/** Rasterise a DICOM-SEG onto the labelmap (created from the T1c volume on first use) and show it. */
export async function showSeg(
  buffer: ArrayBuffer,
  reference: Types.IImageVolume,
): Promise<{ labelmap: LabelVolume; segs: Segment[]; centre: Types.Point3 | null }> {
  const seg = parseSeg(buffer);
  const labelmap = (cache.getVolume(LABELMAP_ID) ??
    volumeLoader.createAndCacheDerivedLabelmapVolume(reference.volumeId, { volumeId: LABELMAP_ID })) as LabelVolume;
  const data = new Uint8Array(labelmap.dimensions[0] * labelmap.dimensions[1] * labelmap.dimensions[2]);
  rasterise(seg, geometryOf(labelmap), data);
  labelmap.voxelManager.setCompleteScalarDataArray(data);
  const first = !segmentation.state.getSegmentation(SEG_ID);
  if (first) {
    segmentation.addSegmentations([
      {
        segmentationId: SEG_ID,
        representation: { type: LABELMAP, data: { volumeId: LABELMAP_ID } },
        config: {
          label: 'Tumour (AI, research use only)',
          segments: Object.fromEntries(seg.segments.map((s) => [s.number, { segmentIndex: s.number, label: s.label }])),
        },
      },
    ]);
    await segmentation.addLabelmapRepresentationToViewportMap(Object.fromEntries(MPR_IDS.map((id) => [id, [{ segmentationId: SEG_ID }]])));
    segmentation.segmentationStyle.setStyle({ type: LABELMAP }, { fillAlpha: DEFAULT_FILL_ALPHA, outlineWidth: 1, renderOutline: true });
    for (const id of MPR_IDS)
      for (const s of seg.segments) segmentation.config.color.setSegmentIndexColor(id, SEG_ID, s.number, [...s.rgb, 255] as Types.Color);
  }
  segmentation.triggerSegmentationEvents.triggerSegmentationDataModified(SEG_ID);
  return { labelmap, segs: seg.segments, centre: centroidWorld(data, labelmap) };
}

export function useTumourOverlay(options: {
  api: Api;
  study: Study | null;
  t1cUid: string | undefined;
  elements: ViewportElements;
  timings: ViewerTimings;
  viewportsShown: MutableRefObject<Promise<void>>;
  tumourCentre: MutableRefObject<Types.Point3 | null>;
  setError: (message: string) => void;
}) {
  const { api, study, t1cUid, elements, timings, viewportsShown, tumourCentre, setError } = options;
  const [segments, setSegments] = useState<Segment[]>([]);
  const [overlayReady, setOverlayReady] = useState(false);

  const t1cVolume = useCallback(() => {
    if (!study || !t1cUid) throw new Error('the study has no T1c series');
    return ensureVolume(volumeIdFor(t1cUid), () =>
      seriesImageIds(study.study_instance_uid, t1cUid, (p) => api.request(p, { headers: { accept: 'application/dicom+json' } })),
    );
  }, [api, study, t1cUid]);

  useEffect(() => {
    if (!study || study.latest_job?.state !== 'succeeded' || !t1cUid) return;
    let cancelled = false;
    (async () => {
      try {
        await initCornerstone();
        const [buffer, reference] = await Promise.all([
          takeSeg(api, study.study_instance_uid),
          t1cVolume(),
        ]);
        if (cancelled) return;
        // "overlay shown" = the segmentation drawn in the axial view (Cornerstone's event after the
        // frame that has it), then one more axial frame after centring on the tumour
        const segDrawn = nextEvent(eventTarget, ToolEnums.Events.SEGMENTATION_RENDERED, (d) => d?.viewportId === 'axial' && d?.segmentationId === SEG_ID, 5000);
        const { segs, centre } = await showSeg(buffer, reference);
        tumourCentre.current = centre;
        await viewportsShown.current;
        if (cancelled) return;
        if (centre) for (const id of MPR_IDS) sliceThrough(renderingEngine().getViewport(id) as Types.IVolumeViewport, centre);
        await segDrawn;
        const axialDrawn = elements.current.axial ? nextEvent(elements.current.axial, Enums.Events.IMAGE_RENDERED, () => true, 2000) : Promise.resolve(false);
        renderingEngine().renderViewports(MPR_IDS);
        await axialDrawn;
        if (cancelled) return;
        setSegments(segs);
        timings.mark('overlayMs');
        setOverlayReady(true);
      } catch (e) {
        if (!cancelled) setError(`The tumour overlay could not be shown: ${(e as Error).message}`);
      }
    })();
    return () => {
      cancelled = true;
    };
  }, [api, study, t1cUid, t1cVolume]);

  return { segments, setSegments, overlayReady, t1cVolume };
}
