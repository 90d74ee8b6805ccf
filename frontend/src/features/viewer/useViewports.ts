// The three MPR viewports, enabled once per mount on the long-lived rendering engine, and everything
// the viewer put on it (the 3D view, the segmentations, the labelmap) taken away on unmount.
import { useEffect } from 'react';
import { Enums, cache, type Types } from '@cornerstonejs/core';
import { ToolGroupManager, segmentation } from '@cornerstonejs/tools';
import { TOOL_GROUP_3D_ID, TOOL_GROUP_ID, initCornerstone, renderingEngine, setEditMode } from './cornerstone';
import { LABELMAP_ID, MPR_IDS, SEG_ID, VIEW_3D, VIEWPORTS, type ViewportElements } from './constants';

export function useViewports(elements: ViewportElements): void {
  useEffect(() => {
    let disposed = false;
    const engine = renderingEngine();
    (async () => {
      await initCornerstone();
      if (disposed) return;
      engine.setViewports(
        VIEWPORTS.map((v) => ({
          viewportId: v.id,
          type: Enums.ViewportType.ORTHOGRAPHIC,
          element: elements.current[v.id]!,
          defaultOptions: { orientation: v.orientation, background: [0, 0, 0] as Types.Point3 },
        })),
      );
      const group = ToolGroupManager.getToolGroup(TOOL_GROUP_ID)!;
      for (const id of MPR_IDS) group.addViewport(id, engine.id);
      setEditMode('navigate');
    })();
    const resize = () => engine.resize(true, true);
    window.addEventListener('resize', resize);
    return () => {
      disposed = true;
      window.removeEventListener('resize', resize);
      const group = ToolGroupManager.getToolGroup(TOOL_GROUP_ID);
      for (const id of MPR_IDS) group?.removeViewports(engine.id, id);
      ToolGroupManager.getToolGroup(TOOL_GROUP_3D_ID)?.removeViewports(engine.id, VIEW_3D);
      for (const id of [...MPR_IDS, VIEW_3D]) {
        try {
          engine.disableElement(id);
        } catch {
          /* not enabled */
        }
      }
      try {
        segmentation.segmentationStyle.clearSegmentationStyle(SEG_ID); // per-segment opacities
        segmentation.removeAllSegmentations();
      } catch {
        /* nothing to remove */
      }
      if (cache.getVolume(LABELMAP_ID)) cache.removeVolumeLoadObject(LABELMAP_ID);
      setEditMode('navigate');
    };
  }, []);
}
