// The brain mask as an outline on the MPR views: a second Cornerstone labelmap (derived from the T1c volume,
// like the tumour's), drawn as an outline only and never active, so that the brush keeps editing the tumour.
// Loaded on first use from GET /api/studies/{uid}/brain-mask.nii.gz (present when brain extraction ran).
import { useCallback, useEffect, useRef, useState } from 'react';
import { cache, volumeLoader, type Types } from '@cornerstonejs/core';
import { Enums as ToolEnums, segmentation } from '@cornerstonejs/tools';
import type { Api, Study } from '../api/client';
import { geometryOf } from '../editing/labelmap';
import { brainMaskUrl, gunzipIfNeeded, parseNifti, sampleOntoGrid } from './brainMask';
import { renderingEngine } from './cornerstone';

export const BRAIN_SEG_ID = 'glioscope-brain';
const LABELMAP = ToolEnums.SegmentationRepresentations.Labelmap;
const OUTLINE_RGB: Types.Color = [0, 200, 255, 255];
// inactive keys too: the tumour segmentation stays the active one
const OUTLINE_STYLE = {
  renderFill: false, renderFillInactive: false, renderOutline: true, renderOutlineInactive: true,
  outlineWidth: 1, outlineWidthInactive: 1, outlineOpacity: 0.9, outlineOpacityInactive: 0.9,
};

type LabelVolume = Types.IImageVolume & { voxelManager: { setCompleteScalarDataArray: (d: ArrayLike<number>) => void } };

export interface BrainMaskOutline {
  available: boolean; // the study has a brain mask
  shown: boolean; // asked for (the outline is on screen once `loading` is over)
  loading: boolean;
  error: string | null;
  toggle: () => void;
}

export function useBrainMaskOutline(options: {
  api: Api;
  study: Study | null;
  reference: () => Promise<Types.IImageVolume>; // the T1c volume (the mask's grid)
  viewportIds: string[];
  activeSegmentationId: string; // kept active in every viewport (the brush edits it)
}): BrainMaskOutline {
  const { api, study, reference, viewportIds, activeSegmentationId } = options;
  const url = brainMaskUrl(study);
  const labelmapId = `${BRAIN_SEG_ID}-${study?.study_instance_uid ?? ''}`;
  const [shown, setShown] = useState(false);
  const [loading, setLoading] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const added = useRef(false);

  useEffect(
    () => () => {
      try {
        if (segmentation.state.getSegmentation(BRAIN_SEG_ID)) segmentation.removeSegmentation(BRAIN_SEG_ID);
      } catch {
        /* already removed with the viewer's segmentations */
      }
      if (cache.getVolume(labelmapId)) cache.removeVolumeLoadObject(labelmapId);
      added.current = false;
    },
    [labelmapId],
  );

  const show = useCallback(async () => {
    if (!url) return;
    const [buffer, ref] = await Promise.all([api.request(url).then((r) => r.arrayBuffer()), reference()]);
    const mask = parseNifti(await gunzipIfNeeded(buffer));
    const labelmap = (cache.getVolume(labelmapId) ??
      volumeLoader.createAndCacheDerivedLabelmapVolume(ref.volumeId, { volumeId: labelmapId })) as LabelVolume;
    const [nx, ny, nz] = labelmap.dimensions;
    const data = new Uint8Array(nx * ny * nz);
    if (!sampleOntoGrid(mask, geometryOf(labelmap), data)) throw new Error('the brain mask does not overlap the T1c');
    labelmap.voxelManager.setCompleteScalarDataArray(data);
    segmentation.addSegmentations([
      {
        segmentationId: BRAIN_SEG_ID,
        representation: { type: LABELMAP, data: { volumeId: labelmapId } },
        config: { label: 'Brain mask (deepbet)', segments: { 1: { segmentIndex: 1, label: 'Brain' } } },
      },
    ]);
    await segmentation.addLabelmapRepresentationToViewportMap(Object.fromEntries(viewportIds.map((id) => [id, [{ segmentationId: BRAIN_SEG_ID }]])));
    segmentation.segmentationStyle.setStyle({ type: LABELMAP, segmentationId: BRAIN_SEG_ID }, OUTLINE_STYLE);
    for (const id of viewportIds) {
      segmentation.segmentationStyle.setRenderInactiveSegmentations(id, true);
      segmentation.config.color.setSegmentIndexColor(id, BRAIN_SEG_ID, 1, OUTLINE_RGB);
      if (segmentation.state.getSegmentation(activeSegmentationId)) segmentation.activeSegmentation.setActiveSegmentation(id, activeSegmentationId);
    }
    segmentation.triggerSegmentationEvents.triggerSegmentationDataModified(BRAIN_SEG_ID);
    added.current = true;
  }, [api, url, reference, labelmapId, viewportIds, activeSegmentationId]);

  const toggle = useCallback(() => {
    if (!url || loading) return;
    const next = !shown;
    if (added.current) {
      for (const id of viewportIds) segmentation.config.visibility.setSegmentationRepresentationVisibility(id, { segmentationId: BRAIN_SEG_ID, type: LABELMAP }, next);
      renderingEngine().renderViewports(viewportIds);
      setShown(next);
      return;
    }
    setShown(true); // the checkbox follows the click at once; the outline appears once loaded
    setLoading(true);
    setError(null);
    show().then(
      () => renderingEngine().renderViewports(viewportIds),
      (e: Error) => {
        setShown(false);
        setError(`The brain mask could not be shown: ${e.message}`);
      },
    ).finally(() => setLoading(false));
  }, [url, loading, shown, show, viewportIds]);

  return { available: !!url, shown, loading, error, toggle };
}
