// Each segment shown or hidden (in the three MPR views and the 3D surface) and its fill opacity.
import { useState } from 'react';
import { segmentation, utilities as toolUtilities } from '@cornerstonejs/tools';
import { renderingEngine } from './cornerstone';
import { LABELMAP, MPR_IDS, SEG_ID, VIEW_3D } from './constants';
import { segmentFillStyle } from './segmentStyle';

export function useSegmentAppearance() {
  const [hidden, setHidden] = useState<Set<number>>(new Set());
  const [opacities, setOpacities] = useState<Record<number, number>>({}); // fill opacity per segment (default DEFAULT_FILL_ALPHA)

  const toggle = (number: number) => {
    const next = new Set(hidden);
    if (next.has(number)) next.delete(number);
    else next.add(number);
    setHidden(next);
    for (const id of MPR_IDS) segmentation.config.visibility.setSegmentIndexVisibility(id, { segmentationId: SEG_ID, type: LABELMAP }, number, !next.has(number));
    renderingEngine().renderViewports(MPR_IDS);
    const view3d = renderingEngine().getViewport(VIEW_3D);
    const surfaceActor = view3d?.getActor(`glioscope-surface-${number}`)?.actor as unknown as { setVisibility?: (v: boolean) => void } | undefined;
    if (view3d && surfaceActor?.setVisibility) {
      surfaceActor.setVisibility(!next.has(number));
      view3d.render();
    }
  };

  /** One segment's fill opacity in the three MPR views (the outline stays). */
  const chooseOpacity = (number: number, opacity: number) => {
    const style = segmentFillStyle(opacity);
    setOpacities((o) => ({ ...o, [number]: style.fillAlpha }));
    segmentation.segmentationStyle.setStyle({ type: LABELMAP, segmentationId: SEG_ID, segmentIndex: number }, style);
    toolUtilities.segmentation.triggerSegmentationRenderBySegmentationId(SEG_ID);
    renderingEngine().renderViewports(MPR_IDS);
  };

  return { hidden, opacities, toggle, chooseOpacity };
}
