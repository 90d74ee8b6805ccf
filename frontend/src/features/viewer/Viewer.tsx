import { useCallback, useEffect, useMemo, useRef, useState, type PointerEvent } from 'react';
import {
  Enums,
  cache,
  eventTarget,
  setVolumesForViewports,
  volumeLoader,
  type Types,
} from '@cornerstonejs/core';
import { Enums as ToolEnums, ToolGroupManager, segmentation, utilities as toolUtilities } from '@cornerstonejs/tools';
import type { Api, Job, Study } from '../api/client';
import { ApiError } from '../api/client';
import { geometryOf, newVersionBody, type Geometry } from '../editing/labelmap';
import { canEditSegmentation, describeVersion, hasResult, latestVersion, latestWithResult, saveErrorMessage, sortVersions, type SegVersion } from '../editing/versions';
import { JobProgress } from '../jobs/JobProgress';
import { followJob, stageLabel } from '../jobs/sse';
import { ReportPanel } from '../report/ReportPanel';
import {
  TOOL_GROUP_3D_ID,
  TOOL_GROUP_ID,
  ensureVolume,
  initCornerstone,
  renderingEngine,
  seriesImageIds,
  setBrushSize,
  setEditMode,
  volumeIdFor,
  type EditMode,
} from './cornerstone';
import { parseSeg, rasterise, type Segment } from './dicomSeg';
import { PRESETS, applyPreset, type VoiRange } from './presets';
import { DEFAULT_FILL_ALPHA, opacityOf, segmentFillStyle } from './segmentStyle';
import { Measurements } from './Measurements';
import { BrainMaskToggle } from './BrainMaskToggle';
import { BRAIN_SEG_ID } from './useBrainMaskOutline';

const VIEWPORTS = [
  { id: 'axial', label: 'Axial', orientation: Enums.OrientationAxis.AXIAL },
  { id: 'sagittal', label: 'Sagittal', orientation: Enums.OrientationAxis.SAGITTAL },
  { id: 'coronal', label: 'Coronal', orientation: Enums.OrientationAxis.CORONAL },
];
const MPR_IDS = VIEWPORTS.map((v) => v.id);
const VIEW_3D = 'surface3d';
const ROLES = ['T1', 'T1c', 'T2', 'FLAIR'];
const SEG_ID = 'glioscope-tumour';
const LABELMAP_ID = `${SEG_ID}-labelmap`;
const LABELMAP = ToolEnums.SegmentationRepresentations.Labelmap;
const DEFAULT_SEGMENTS: Segment[] = [1, 2, 3].map((n) => ({ number: n, label: `Segment ${n}`, rgb: [255, 0, 0] }));

interface Timings {
  firstFrameMs?: number;
  volumeLoadedMs?: number;
  overlayMs?: number;
  surfaceMs?: number;
  save?: Record<string, number>; // the last save's steps, ms
}

function publishTimings(t: Timings): void {
  (window as unknown as { __glioscopeTimings: Timings }).__glioscopeTimings = { ...t };
}

// The DICOM-SEG is requested as soon as the viewer opens, in parallel with the study record and the
// volume's metadata; the overlay takes it (once: a later opening must not get an older version).
const segPrefetch = new Map<string, Promise<ArrayBuffer>>();
function prefetchSeg(api: Api, uid: string): void {
  if (segPrefetch.has(uid)) return;
  const pending = api.segmentation(uid);
  pending.catch(() => undefined);
  segPrefetch.set(uid, pending);
  setTimeout(() => segPrefetch.get(uid) === pending && segPrefetch.delete(uid), 10_000);
}
function takeSeg(api: Api, uid: string): Promise<ArrayBuffer> {
  const pending = segPrefetch.get(uid);
  segPrefetch.delete(uid);
  return pending ? pending.catch(() => api.segmentation(uid)) : api.segmentation(uid);
}

type LabelVolume = Types.IImageVolume & {
  voxelManager: { getCompleteScalarDataArray: () => ArrayLike<number>; setCompleteScalarDataArray: (d: ArrayLike<number>) => void };
};

export function Viewer({ api, studyUid }: { api: Api; studyUid: string }) {
  const elements = useRef<Record<string, HTMLDivElement | null>>({});
  const [study, setStudy] = useState<Study | null>(null);
  const [role, setRole] = useState<string | null>(null); // the user's role
  const [error, setError] = useState<string | null>(null);
  const [sequence, setSequence] = useState<string>('T1c');
  const [segments, setSegments] = useState<Segment[]>([]);
  const [hidden, setHidden] = useState<Set<number>>(new Set());
  const [opacities, setOpacities] = useState<Record<number, number>>({}); // fill opacity per segment (default DEFAULT_FILL_ALPHA)
  const [status, setStatus] = useState('Loading the study…');
  const [overlayReady, setOverlayReady] = useState(false);
  const [frameReady, setFrameReady] = useState(false);
  const [surface, setSurface] = useState<{ state: 'idle' | 'building' | 'ready' | 'failed'; triangles?: number; message?: string }>({ state: 'idle' });
  const baseVoi = useRef<VoiRange | null>(null);
  const [preset, setPreset] = useState('default');
  const timings = useRef<Timings>({});
  // settles once the viewports show the chosen series (setVolumesForViewports resets their cameras)
  const viewportsShown = useRef<Promise<void>>(Promise.resolve());
  const tumourCentre = useRef<Types.Point3 | null>(null);
  const opened = useRef(performance.now());
  // editing
  const [mode, setMode] = useState<EditMode>('navigate');
  const [activeSegment, setActiveSegment] = useState(1);
  const [brushMm, setBrushMm] = useState(6);
  const [strokes, setStrokes] = useState(0); // unsaved
  const [edits, setEdits] = useState(0); // strokes and undos since the viewer opened
  const [versions, setVersions] = useState<SegVersion[] | null>(null);
  const [versionsProblem, setVersionsProblem] = useState<string | null>(null);
  const [shownVersion, setShownVersion] = useState<number | null>(null);
  const [saving, setSaving] = useState<{ message: string; job?: Job } | null>(null);
  const [saveError, setSaveError] = useState<string | null>(null);
  const [measurementsKey, setMeasurementsKey] = useState(0);
  const [panel, setPanel] = useState<'segments' | 'report'>('segments');

  const loadStudy = useCallback(() => {
    return api.study(studyUid).then(
      (s) => setStudy(s),
      (e: Error) => setError(e instanceof ApiError && e.status === 404 ? 'This study does not exist or is not in your projects.' : e.message),
    );
  }, [api, studyUid]);

  useEffect(() => {
    prefetchSeg(api, studyUid);
    void loadStudy();
    api.me().then((me) => setRole(me.role), () => setRole(null));
  }, [api, studyUid, loadStudy]);

  const job = study?.latest_job ?? null;
  const segmented = !!study?.series && (study.latest_job?.state === 'succeeded' || (versions?.length ?? 0) > 0);
  const seriesByRole = useMemo(() => {
    const out: Record<string, string> = {};
    for (const s of study?.series ?? []) if (s.role) out[s.role] = s.series_instance_uid;
    return out;
  }, [study]);
  const t1cUid = seriesByRole.T1c;
  const mayEdit = canEditSegmentation(role);

  // Viewports: enabled once per mount on the long-lived rendering engine.
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

  // The chosen series in the three viewports.
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
      if (timings.current.firstFrameMs === undefined && (volume?.loadStatus?.framesProcessed ?? 1) > 0) {
        timings.current.firstFrameMs = Math.round(performance.now() - opened.current);
        publishTimings(timings.current);
        setFrameReady(true);
      }
    };
    const onLoaded = (evt: Event) => {
      const detail = (evt as CustomEvent).detail as { volumeId?: string };
      if (detail?.volumeId !== volumeId) return;
      if (timings.current.volumeLoadedMs === undefined) {
        timings.current.volumeLoadedMs = Math.round(performance.now() - opened.current);
        publishTimings(timings.current);
      }
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

  const t1cVolume = useCallback(() => {
    if (!study || !t1cUid) throw new Error('the study has no T1c series');
    return ensureVolume(volumeIdFor(t1cUid), () =>
      seriesImageIds(study.study_instance_uid, t1cUid, (p) => api.request(p, { headers: { accept: 'application/dicom+json' } })),
    );
  }, [api, study, t1cUid]);

  /** Rasterise a DICOM-SEG onto the labelmap (created from the T1c volume on first use) and show it. */
  const showSeg = useCallback(
    async (buffer: ArrayBuffer, reference: Types.IImageVolume): Promise<{ labelmap: LabelVolume; segs: Segment[]; centre: Types.Point3 | null }> => {
      const seg = parseSeg(buffer);
      const labelmap = (cache.getVolume(LABELMAP_ID) ??
        volumeLoader.createAndCacheDerivedLabelmapVolume(reference.volumeId, { volumeId: LABELMAP_ID })) as LabelVolume;
      const data = new Uint8Array(labelmap.dimensions[0] * labelmap.dimensions[1] * labelmap.dimensions[2]);
      rasterise(seg, gridOf(labelmap), data);
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
    },
    [],
  );

  // The tumour overlay: the DICOM-SEG (prefetched at open) rasterised onto a labelmap derived from the T1c volume.
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
        timings.current.overlayMs = Math.round(performance.now() - opened.current);
        publishTimings(timings.current);
        setOverlayReady(true);
      } catch (e) {
        if (!cancelled) setError(`The tumour overlay could not be shown: ${(e as Error).message}`);
      }
    })();
    return () => {
      cancelled = true;
    };
  }, [api, study, t1cUid, t1cVolume, showSeg]);

  // The segmentation's versions (who saved what, when): the base of the next save.
  const loadVersions = useCallback(async () => {
    try {
      const list = sortVersions(await api.segmentationVersions(studyUid));
      setVersions(list);
      setVersionsProblem(null);
      return list;
    } catch (e) {
      const status = e instanceof ApiError ? e.status : 0;
      setVersions(null);
      setVersionsProblem(status === 404 || status === 405 ? 'This server keeps no segmentation versions yet: edits cannot be saved.' : (e as Error).message);
      return null;
    }
  }, [api, studyUid]);

  useEffect(() => {
    if (!overlayReady) return;
    void loadVersions().then((list) => {
      const latest = list && latestWithResult(list); // what the default GET …/segmentation showed
      if (latest) setShownVersion((v) => v ?? latest.version);
    });
  }, [overlayReady, loadVersions]);

  // The 3D view of the tumour surface, built once the MPR overlay is on screen (it must not delay it).
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
      if (timings.current.surfaceMs === undefined) {
        timings.current.surfaceMs = Math.round(performance.now() - opened.current);
        publishTimings(timings.current);
      }
      setSurface({ state: 'ready', triangles, message: `${Math.round(performance.now() - started)} ms` });
    } catch (e) {
      setSurface({ state: 'failed', message: (e as Error).message });
    }
  }, []);
  const segmentsRef = useRef<Segment[]>([]);
  segmentsRef.current = segments;
  const hiddenRef = useRef(hidden);
  hiddenRef.current = hidden;

  useEffect(() => {
    if (!overlayReady) return;
    const timer = setTimeout(() => void buildSurface(), 300);
    return () => clearTimeout(timer);
  }, [overlayReady, buildSurface]);

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

  const choosePreset = (id: string) => {
    const engine = renderingEngine();
    const first = engine.getViewport('axial') as Types.IVolumeViewport | undefined;
    if (!first) return;
    if (!baseVoi.current) baseVoi.current = ((first.getProperties() ?? {}).voiRange as VoiRange | undefined) ?? null;
    if (!baseVoi.current) return;
    const range = applyPreset(baseVoi.current, PRESETS.find((p) => p.id === id)!);
    for (const id of MPR_IDS) (engine.getViewport(id) as Types.IVolumeViewport).setProperties({ voiRange: range });
    engine.renderViewports(MPR_IDS);
    setPreset(id);
  };

  // --- editing -------------------------------------------------------------------------------
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

  const reloadVersion = useCallback(
    async (version: number) => {
      const [buffer, reference] = await Promise.all([api.segmentation(studyUid, version), t1cVolume()]);
      const { segs } = await showSeg(buffer, reference);
      renderingEngine().renderViewports(MPR_IDS);
      setSegments(segs);
      setShownVersion(version);
      history.current = [];
      setStrokes(0);
      void buildSurface();
    },
    [api, studyUid, t1cVolume, showSeg, buildSurface],
  );

  const save = async () => {
    const labelmap = cache.getVolume(LABELMAP_ID) as LabelVolume | undefined;
    if (!labelmap || !t1cUid) return;
    setSaveError(null);
    setSaving({ message: 'Preparing the labelmap…' });
    const steps: Record<string, number> = { startedAt: Date.now() };
    let mark = performance.now();
    const step = (name: string) => {
      const now = performance.now();
      steps[name] = Math.round(now - mark);
      mark = now;
    };
    try {
      const list = versions ?? (await loadVersions());
      const base = (list && latestVersion(list)?.version) ?? shownVersion ?? 1;
      const body = await newVersionBody(base, t1cUid, geometryOf(labelmap), labelmap.voxelManager.getCompleteScalarDataArray());
      step('encode');
      setSaving({ message: 'Sending…' });
      let answer: { version: number; job_id: string };
      try {
        answer = await api.saveSegmentation(studyUid, body);
      } catch (e) {
        if (e instanceof ApiError && e.status === 409) await loadVersions(); // the newer version appears in the list
        if (e instanceof ApiError) throw new Error(saveErrorMessage(e.status, e.message));
        throw e;
      }
      step('post');
      setSaving({ message: `Version ${answer.version}: writing the DICOM-SEG and recomputing the measurements…` });
      const final = await followJob(api, answer.job_id, (j) => setSaving({ message: `Version ${answer.version}: ${stageLabel(j)}`, job: j }));
      step('job');
      if (final.state === 'failed') throw new Error(`Saving version ${answer.version} failed: ${final.error ?? 'no reason given'}`);
      await loadVersions();
      step('versions');
      await reloadVersion(answer.version);
      step('reload');
      setMeasurementsKey((k) => k + 1);
      setSaving(null);
      steps.endedAt = Date.now();
      timings.current.save = steps;
      publishTimings(timings.current);
    } catch (e) {
      setSaving(null);
      setSaveError((e as Error).message);
    }
  };

  /** The four viewports as one PNG, two by two (for the report). */
  const captureViewports = useCallback(async (): Promise<Blob> => {
    const canvases = [...MPR_IDS, VIEW_3D]
      .map((id) => elements.current[id]?.querySelector('canvas'))
      .filter((c): c is HTMLCanvasElement => !!c && c.width > 0);
    if (!canvases.length) throw new Error('no viewport is on screen');
    const cellW = Math.max(...canvases.map((c) => c.width));
    const cellH = Math.max(...canvases.map((c) => c.height));
    const columns = Math.min(2, canvases.length);
    const out = document.createElement('canvas');
    out.width = cellW * columns;
    out.height = cellH * Math.ceil(canvases.length / columns);
    const ctx = out.getContext('2d')!;
    ctx.fillStyle = '#000';
    ctx.fillRect(0, 0, out.width, out.height);
    canvases.forEach((c, n) => ctx.drawImage(c, (n % columns) * cellW, Math.floor(n / columns) * cellH));
    return new Promise((resolve, reject) => out.toBlob((b) => (b ? resolve(b) : reject(new Error('the screenshot could not be encoded'))), 'image/png'));
  }, []);

  const shownSegments = segments.length ? segments : DEFAULT_SEGMENTS;
  const latest = versions ? latestVersion(versions) : null;
  const latestDone = versions ? latestWithResult(versions) : null;

  return (
    <div
      className="viewer"
      data-overlay-ready={overlayReady}
      data-frame-ready={frameReady}
      data-surface={surface.state}
      data-shown-version={shownVersion ?? ''}
      data-strokes={strokes}
    >
      <div className="viewer-toolbar">
        <a href="#/">← Worklist</a>
        <span className="study-title">
          {study ? `${study.patient_name || study.patient_id || 'Study'} · ${study.study_description}` : '…'}
        </span>
        <span className="group" role="group" aria-label="Sequence">
          {ROLES.map((r) => (
            <button key={r} className={r === sequence ? 'active' : ''} disabled={!seriesByRole[r]} onClick={() => setSequence(r)}>
              {r}
            </button>
          ))}
        </span>
        <label>
          Window{' '}
          <select aria-label="Window/level preset" value={preset} onChange={(e) => choosePreset(e.target.value)}>
            {PRESETS.map((p) => (
              <option key={p.id} value={p.id}>
                {p.label}
              </option>
            ))}
          </select>
        </label>
        <button
          className={mode === 'crosshairs' ? 'active' : ''}
          aria-pressed={mode === 'crosshairs'}
          disabled={!frameReady}
          onClick={() => chooseMode(mode === 'crosshairs' ? 'navigate' : 'crosshairs')}
          data-mode="crosshairs"
          title="Click or drag in one view to move the other two to that point"
        >
          Crosshairs
        </button>
        <BrainMaskToggle api={api} study={study} reference={t1cVolume} viewportIds={MPR_IDS} activeSegmentationId={SEG_ID} ready={overlayReady} />
        <span className="group" role="group" aria-label="Panel">
          <button className={panel === 'segments' ? 'active' : ''} onClick={() => setPanel('segments')}>Segments</button>
          <button className={panel === 'report' ? 'active' : ''} onClick={() => setPanel('report')} disabled={!segmented}>Report</button>
        </span>
        {status && <span className="muted loading-status">{status}</span>}
      </div>
      {error && <div className="error" role="alert">{error}</div>}
      {job && job.state !== 'succeeded' && (
        <div className={job.state === 'failed' ? 'error' : 'notice'} role="status" data-job-state={job.state}>
          {job.state === 'failed' ? (
            `The segmentation failed: ${job.error ?? 'no reason given'}. Ask a radiologist or an administrator to start it again.`
          ) : (
            <>
              The segmentation is still running; the overlay appears when it is done.
              <JobProgress api={api} jobId={job.id} onDone={() => void loadStudy()} />
            </>
          )}
        </div>
      )}
      <div className="viewer-body">
        <div className="viewports">
          {VIEWPORTS.map((v) => (
            <div key={v.id} className="viewport-cell">
              <div className="viewport-label">{v.label}</div>
              <div
                className={`viewport ${mode === 'brush' || mode === 'eraser' ? 'editing' : ''}`}
                data-viewport={v.id}
                ref={(el) => void (elements.current[v.id] = el)}
                onContextMenu={(e) => e.preventDefault()}
                onPointerDown={strokeStarted}
                onPointerUp={strokeEnded}
              />
            </div>
          ))}
          <div className="viewport-cell">
            <div className="viewport-label">
              3D tumour surface
              {surface.state === 'building' && ' · building…'}
              {surface.state === 'failed' && ` · failed: ${surface.message}`}
            </div>
            <div
              className="viewport"
              data-viewport={VIEW_3D}
              data-triangles={surface.triangles ?? 0}
              ref={(el) => void (elements.current[VIEW_3D] = el)}
              onContextMenu={(e) => e.preventDefault()}
            />
          </div>
        </div>
        <aside className={`side-panel ${panel === 'report' ? 'wide' : ''}`}>
          {panel === 'report' ? (
            <ReportPanel api={api} studyUid={studyUid} role={role} captureViewports={captureViewports} />
          ) : (
            <>
              <h3>Segments</h3>
              {!segmented && <p className="muted">No segmentation yet.</p>}
              <ul className="segments">
                {segments.map((s) => (
                  <li key={s.number}>
                    <label>
                      <input
                        type="checkbox"
                        checked={!hidden.has(s.number)}
                        onChange={() => toggle(s.number)}
                        data-segment={s.number}
                        data-rgb={s.rgb.join(',')}
                        aria-label={`Show ${s.label}`}
                      />
                      <span className="swatch" style={{ background: `rgb(${s.rgb.join(',')})` }} />
                      {s.label}
                    </label>
                    <input
                      type="range"
                      className="opacity"
                      min={0}
                      max={1}
                      step={0.05}
                      value={opacityOf(opacities, s.number)}
                      onChange={(e) => chooseOpacity(s.number, Number(e.target.value))}
                      data-opacity-segment={s.number}
                      aria-label={`Opacity of ${s.label}`}
                      title={`Fill opacity ${Math.round(opacityOf(opacities, s.number) * 100)} %`}
                    />
                  </li>
                ))}
              </ul>
              {overlayReady && (
                <section className="editing" aria-label="Edit the segmentation">
                  <h3>Edit</h3>
                  {!mayEdit ? (
                    <p className="muted small">{role ? `Your role (${role}) may view but not edit segmentations.` : 'Checking your role…'}</p>
                  ) : (
                    <>
                      <div className="group" role="group" aria-label="Tool">
                        {(['navigate', 'brush', 'eraser'] as const).map((m) => (
                          <button key={m} className={mode === m ? 'active' : ''} onClick={() => chooseMode(m)} data-mode={m}>
                            {m === 'navigate' ? 'Window/level' : m === 'brush' ? 'Brush' : 'Eraser'}
                          </button>
                        ))}
                      </div>
                      <div className="group" role="group" aria-label="Paint segment">
                        {shownSegments.map((s) => (
                          <button
                            key={s.number}
                            className={activeSegment === s.number ? 'active' : ''}
                            onClick={() => chooseSegment(s.number)}
                            data-paint-segment={s.number}
                            title={s.label}
                          >
                            <span className="swatch" style={{ background: `rgb(${s.rgb.join(',')})` }} />
                            {s.number}
                          </button>
                        ))}
                      </div>
                      <label className="small">
                        Brush radius {brushMm} mm{' '}
                        <input type="range" min={1} max={20} value={brushMm} aria-label="Brush radius" onChange={(e) => chooseBrush(Number(e.target.value))} />
                      </label>
                      <div className="group">
                        <button onClick={undo} disabled={!strokes || !!saving}>Undo</button>
                        <button
                          onClick={() => void save()}
                          disabled={!strokes || !!saving || !!versionsProblem}
                          data-action="save-segmentation"
                          title={versionsProblem ?? undefined}
                        >
                          Save as new version
                        </button>
                      </div>
                      {strokes > 0 && !saving && <p className="muted small">{strokes} unsaved edit{strokes > 1 ? 's' : ''}.</p>}
                    </>
                  )}
                  {saving && (
                    <div className="notice small" role="status" data-saving="true">
                      {saving.message}
                      {saving.job && <progress max={1} value={saving.job.state === 'succeeded' ? 1 : saving.job.progress} />}
                    </div>
                  )}
                  {saveError && <div className="error small" role="alert">{saveError}</div>}
                  {versionsProblem && <p className="muted small">{versionsProblem}</p>}
                </section>
              )}
              {versions && versions.length > 0 && (
                <section className="versions" aria-label="Segmentation versions">
                  <h3>Versions</h3>
                  <ul>
                    {versions.map((v) => (
                      <li key={v.version} data-version={v.version} data-voxels={JSON.stringify(v.voxel_counts)}>
                        <button
                          className={`link ${v.version === shownVersion ? 'active' : ''}`}
                          disabled={!!saving || v.version === shownVersion || !hasResult(v)}
                          onClick={() => void reloadVersion(v.version).catch((e: Error) => setSaveError(e.message))}
                          title="Show this version"
                        >
                          {describeVersion(v)}
                        </button>
                        {v.version === latest?.version && <span className="badge ok">latest</span>}
                        {v.voxel_counts && (
                          <div className="muted small">
                            voxels {Object.entries(v.voxel_counts).map(([k, n]) => `${k}: ${n}`).join(' · ')}
                          </div>
                        )}
                      </li>
                    ))}
                  </ul>
                  {shownVersion !== null && latestDone && shownVersion !== latestDone.version && (
                    <p className="muted small">Showing v{shownVersion}; the measurements are those of v{latestDone.version}.</p>
                  )}
                </section>
              )}
              {segmented && <Measurements key={measurementsKey} api={api} studyUid={studyUid} />}
            </>
          )}
          <p className="muted small">Research use only — not for clinical decisions.</p>
        </aside>
      </div>
    </div>
  );
}

/** Resolves true at the next `type` event whose detail passes `accept`, false after `timeoutMs`. */
function nextEvent(
  target: EventTarget,
  type: string,
  accept: (detail: { viewportId?: string; segmentationId?: string } | undefined) => boolean,
  timeoutMs: number,
): Promise<boolean> {
  return new Promise((resolve) => {
    const done = (value: boolean) => {
      clearTimeout(timer);
      target.removeEventListener(type, listener);
      resolve(value);
    };
    const listener = (evt: Event) => accept((evt as CustomEvent).detail) && done(true);
    const timer = setTimeout(() => done(false), timeoutMs);
    target.addEventListener(type, listener);
  });
}

function gridOf(volume: Types.IImageVolume): Geometry {
  return geometryOf(volume);
}

/** The centroid of the labelled voxels in world coordinates (null when empty). */
function centroidWorld(data: Uint8Array, volume: Types.IImageVolume): Types.Point3 | null {
  const [nx, ny] = volume.dimensions;
  let n = 0;
  const sum = [0, 0, 0];
  for (let index = 0; index < data.length; index++) {
    if (!data[index]) continue;
    n++;
    sum[0] += index % nx;
    sum[1] += Math.floor(index / nx) % ny;
    sum[2] += Math.floor(index / (nx * ny));
  }
  if (!n) return null;
  const d = volume.direction;
  const s = volume.spacing;
  const ijk = sum.map((v) => v / n);
  return [0, 1, 2].map((a) => volume.origin[a] + ijk[0] * s[0] * d[a] + ijk[1] * s[1] * d[3 + a] + ijk[2] * s[2] * d[6 + a]) as Types.Point3;
}

/** Move a viewport's slice (along its normal only, keeping the in-plane pan) through `point`. */
function sliceThrough(viewport: Types.IVolumeViewport | undefined, point: Types.Point3): void {
  if (!viewport) return;
  const camera = viewport.getCamera();
  const normal = camera.viewPlaneNormal!;
  const focal = camera.focalPoint!;
  const distance = [0, 1, 2].reduce((acc, a) => acc + (point[a] - focal[a]) * normal[a], 0);
  const shift = (p: Types.Point3) => p.map((v, a) => v + distance * normal[a]) as Types.Point3;
  viewport.setCamera({ focalPoint: shift(focal), position: shift(camera.position!) });
}
