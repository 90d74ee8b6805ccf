// Editing the tumour labelmap: the tool (window/level, crosshairs, brush, eraser), the painted segment,
// the brush radius, the strokes since the last save with their undo (also Ctrl/Cmd+Z), the 3D surface
// rebuilt once the user pauses, and the browser's warning before unsaved strokes are lost.
import { useCallback, useEffect, useRef, useState, type PointerEvent } from 'react';
import { cache } from '@cornerstonejs/core';
import { segmentation } from '@cornerstonejs/tools';
import { renderingEngine, setBrushSize, setEditMode, type EditMode } from './cornerstone';
import { LABELMAP_ID, MPR_IDS, SEG_ID, type LabelVolume } from './constants';

export type Editing = ReturnType<typeof useEditing>;

export function useEditing(overlayReady: boolean, buildSurface: () => Promise<void>) {
  const [mode, setMode] = useState<EditMode>('navigate');
  const [activeSegment, setActiveSegment] = useState(1);
  const [brushMm, setBrushMm] = useState(6);
  const [strokes, setStrokes] = useState(0); // unsaved
  const [edits, setEdits] = useState(0); // strokes and undos since the viewer opened

  const chooseMode = (next: EditMode) => {
    setMode(next);
    setEditMode(next);
  };
  const chooseSegment = (n: number) => {
    setActiveSegment(n);
    segmentation.segmentIndex.setActiveSegmentIndex(SEG_ID, n);
  };
  const chooseBrush = (mm: number) => {
    setBrushMm(mm);
    setBrushSize(mm);
  };
  useEffect(() => {
    if (!overlayReady) return;
    segmentation.segmentIndex.setActiveSegmentIndex(SEG_ID, activeSegment);
    setBrushSize(brushMm);
  }, [overlayReady]); // eslint-disable-line react-hooks/exhaustive-deps

  // Undo: the labelmap as it was before each stroke (Cornerstone's history memo can split one
  // stroke into several entries); 20 strokes at most.
  const history = useRef<Uint8Array[]>([]);
  const strokeStarted = (e: PointerEvent) => {
    if ((mode !== 'brush' && mode !== 'eraser') || e.button !== 0) return;
    const labelmap = cache.getVolume(LABELMAP_ID) as LabelVolume | undefined;
    if (!labelmap) return;
    history.current.push(new Uint8Array(labelmap.voxelManager.getCompleteScalarDataArray() as Uint8Array));
    if (history.current.length > 20) history.current.shift();
  };
  const strokeEnded = () => {
    if (mode !== 'brush' && mode !== 'eraser') return;
    setStrokes(history.current.length);
    setEdits((n) => n + 1);
  };
  const undo = () => {
    const labelmap = cache.getVolume(LABELMAP_ID) as LabelVolume | undefined;
    const previous = history.current.pop();
    if (!labelmap || !previous) return;
    labelmap.voxelManager.setCompleteScalarDataArray(previous);
    segmentation.triggerSegmentationEvents.triggerSegmentationDataModified(SEG_ID);
    renderingEngine().renderViewports(MPR_IDS);
    setStrokes(history.current.length);
    setEdits((n) => n + 1);
  };
  /** Another version replaced the labelmap: nothing to undo, nothing unsaved. */
  const forgetStrokes = useCallback(() => {
    history.current = [];
    setStrokes(0);
  }, []);

  // the 3D surface follows the strokes (rebuilt once the user pauses)
  useEffect(() => {
    if (!overlayReady || !edits) return;
    const timer = setTimeout(() => void buildSurface(), 1500);
    return () => clearTimeout(timer);
  }, [edits, overlayReady, buildSurface]);

  // unsaved strokes: the browser asks before the tab closes or reloads; Ctrl/Cmd+Z undoes a stroke
  useEffect(() => {
    if (!strokes) return;
    const warn = (e: BeforeUnloadEvent) => e.preventDefault();
    window.addEventListener('beforeunload', warn);
    return () => window.removeEventListener('beforeunload', warn);
  }, [strokes]);
  const undoRef = useRef(() => {});
  undoRef.current = undo;
  useEffect(() => {
    const key = (e: KeyboardEvent) => {
      if ((e.ctrlKey || e.metaKey) && e.key === 'z' && !(e.target instanceof HTMLTextAreaElement || e.target instanceof HTMLInputElement)) {
        e.preventDefault();
        undoRef.current();
      }
    };
    window.addEventListener('keydown', key);
    return () => window.removeEventListener('keydown', key);
  }, []);

  return {
    mode, chooseMode, activeSegment, chooseSegment, brushMm, chooseBrush,
    strokes, strokeStarted, strokeEnded, undo, forgetStrokes,
  };
}
