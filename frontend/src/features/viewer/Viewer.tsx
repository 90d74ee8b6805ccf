import { useEffect, useMemo, useRef, useState } from 'react';
import { Enums, cache, eventTarget, setVolumesForViewports, volumeLoader, type Types } from '@cornerstonejs/core';
import { Enums as ToolEnums, ToolGroupManager, segmentation } from '@cornerstonejs/tools';
import type { Api, Study } from '../api/client';
import { ApiError } from '../api/client';
import { TOOL_GROUP_ID, ensureVolume, initCornerstone, renderingEngine, seriesImageIds, volumeIdFor } from './cornerstone';
import { parseSeg, rasterise, type Segment } from './dicomSeg';
import { PRESETS, applyPreset, type VoiRange } from './presets';
import { Measurements } from './Measurements';

const VIEWPORTS = [
  { id: 'axial', label: 'Axial', orientation: Enums.OrientationAxis.AXIAL },
  { id: 'sagittal', label: 'Sagittal', orientation: Enums.OrientationAxis.SAGITTAL },
  { id: 'coronal', label: 'Coronal', orientation: Enums.OrientationAxis.CORONAL },
];
const ROLES = ['T1', 'T1c', 'T2', 'FLAIR'];
const SEG_ID = 'glioscope-tumour';
const LABELMAP = ToolEnums.SegmentationRepresentations.Labelmap;

interface Timings {
  firstFrameMs?: number;
  volumeLoadedMs?: number;
  overlayMs?: number;
}

function publishTimings(t: Timings): void {
  (window as unknown as { __glioscopeTimings: Timings }).__glioscopeTimings = { ...t };
}

export function Viewer({ api, studyUid }: { api: Api; studyUid: string }) {
  const elements = useRef<Record<string, HTMLDivElement | null>>({});
  const [study, setStudy] = useState<Study | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [role, setRole] = useState<string>('T1c');
  const [segments, setSegments] = useState<Segment[]>([]);
  const [hidden, setHidden] = useState<Set<number>>(new Set());
  const [status, setStatus] = useState('Loading the study…');
  const [overlayReady, setOverlayReady] = useState(false);
  const [frameReady, setFrameReady] = useState(false);
  const baseVoi = useRef<VoiRange | null>(null);
  const [preset, setPreset] = useState('default');
  const timings = useRef<Timings>({});
  const opened = useRef(performance.now());

  useEffect(() => {
    let cancelled = false;
    api.study(studyUid).then(
      (s) => !cancelled && setStudy(s),
      (e: Error) => !cancelled && setError(e instanceof ApiError && e.status === 404 ? 'This study does not exist or is not in your projects.' : e.message),
    );
    return () => {
      cancelled = true;
    };
  }, [api, studyUid]);

  const job = study?.latest_job ?? null;
  const segmented = job?.state === 'succeeded';
  const seriesByRole = useMemo(() => {
    const out: Record<string, string> = {};
    for (const s of study?.series ?? []) if (s.role) out[s.role] = s.series_instance_uid;
    return out;
  }, [study]);

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
      for (const v of VIEWPORTS) group.addViewport(v.id, engine.id);
    })();
    const resize = () => engine.resize(true, true);
    window.addEventListener('resize', resize);
    return () => {
      disposed = true;
      window.removeEventListener('resize', resize);
      const group = ToolGroupManager.getToolGroup(TOOL_GROUP_ID);
      for (const v of VIEWPORTS) {
        group?.removeViewports(engine.id, v.id);
        try {
          engine.disableElement(v.id);
        } catch {
          /* not enabled yet */
        }
      }
      try {
        segmentation.removeAllSegmentations();
      } catch {
        /* nothing to remove */
      }
    };
  }, []);

  // The chosen series in the three viewports.
  useEffect(() => {
    if (!study) return;
    const seriesUid = seriesByRole[role] ?? study.series.find((s) => s.modality === 'MR')?.series_instance_uid;
    if (!seriesUid) {
      setStatus('This study has no MR series to show.');
      return;
    }
    let cancelled = false;
    const engine = renderingEngine();
    const volumeId = volumeIdFor(seriesUid);
    const ids = VIEWPORTS.map((v) => v.id);
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
        setStatus(`Loading ${role}…`);
        eventTarget.addEventListener(Enums.Events.IMAGE_VOLUME_LOADING_COMPLETED, onLoaded);
        const volume = await ensureVolume(volumeId, () =>
          seriesImageIds(study.study_instance_uid, seriesUid, (p) => api.request(p, { headers: { accept: 'application/dicom+json' } })),
        );
        if (cancelled) return;
        elements.current.axial?.addEventListener(Enums.Events.IMAGE_RENDERED, onRendered);
        await setVolumesForViewports(engine, [{ volumeId }], ids);
        baseVoi.current = null;
        engine.renderViewports(ids);
        if ((volume as unknown as { loadStatus?: { loaded?: boolean } }).loadStatus?.loaded) onLoaded(new CustomEvent('x', { detail: { volumeId } }));
      } catch (e) {
        if (!cancelled) setError(`The images could not be loaded: ${(e as Error).message}`);
      }
    })();
    return () => {
      cancelled = true;
      eventTarget.removeEventListener(Enums.Events.IMAGE_VOLUME_LOADING_COMPLETED, onLoaded);
      elements.current.axial?.removeEventListener(Enums.Events.IMAGE_RENDERED, onRendered);
    };
  }, [api, study, role, seriesByRole]);

  // The tumour overlay: the DICOM-SEG rasterised onto a labelmap derived from the T1c volume.
  useEffect(() => {
    if (!study || !segmented) return;
    const t1c = seriesByRole.T1c;
    if (!t1c) return;
    let cancelled = false;
    (async () => {
      try {
        await initCornerstone();
        const [buffer, reference] = await Promise.all([
          api.segmentation(study.study_instance_uid),
          ensureVolume(volumeIdFor(t1c), () =>
            seriesImageIds(study.study_instance_uid, t1c, (p) => api.request(p, { headers: { accept: 'application/dicom+json' } })),
          ),
        ]);
        if (cancelled) return;
        const seg = parseSeg(buffer);
        const labelmapId = `${SEG_ID}-labelmap`;
        const labelmap = cache.getVolume(labelmapId) ?? volumeLoader.createAndCacheDerivedLabelmapVolume(reference.volumeId, { volumeId: labelmapId });
        const voxels = labelmap.voxelManager as unknown as {
          getCompleteScalarDataArray: () => ArrayLike<number>;
          setCompleteScalarDataArray: (d: ArrayLike<number>) => void;
        };
        const data = new Uint8Array(labelmap.dimensions[0] * labelmap.dimensions[1] * labelmap.dimensions[2]);
        rasterise(seg, {
          dimensions: labelmap.dimensions as [number, number, number],
          spacing: labelmap.spacing as [number, number, number],
          origin: labelmap.origin as [number, number, number],
          direction: labelmap.direction,
        }, data);
        voxels.setCompleteScalarDataArray(data);
        const centre = centroidWorld(data, labelmap);
        if (!segmentation.state.getSegmentation(SEG_ID)) {
          segmentation.addSegmentations([
            {
              segmentationId: SEG_ID,
              representation: { type: LABELMAP, data: { volumeId: labelmapId } },
              config: {
                label: 'Tumour (AI, research use only)',
                segments: Object.fromEntries(seg.segments.map((s) => [s.number, { segmentIndex: s.number, label: s.label }])),
              },
            },
          ]);
        }
        const ids = VIEWPORTS.map((v) => v.id);
        await segmentation.addLabelmapRepresentationToViewportMap(Object.fromEntries(ids.map((id) => [id, [{ segmentationId: SEG_ID }]])));
        segmentation.segmentationStyle.setStyle({ type: LABELMAP }, { fillAlpha: 0.55, outlineWidth: 1, renderOutline: true });
        for (const id of ids)
          for (const s of seg.segments) segmentation.config.color.setSegmentIndexColor(id, SEG_ID, s.number, [...s.rgb, 255] as Types.Color);
        segmentation.triggerSegmentationEvents.triggerSegmentationDataModified(SEG_ID);
        if (centre) for (const id of ids) sliceThrough(renderingEngine().getViewport(id) as Types.IVolumeViewport, centre);
        renderingEngine().renderViewports(ids);
        if (cancelled) return;
        setSegments(seg.segments);
        requestAnimationFrame(() => {
          timings.current.overlayMs = Math.round(performance.now() - opened.current);
          publishTimings(timings.current);
          setOverlayReady(true);
        });
      } catch (e) {
        if (!cancelled) setError(`The tumour overlay could not be shown: ${(e as Error).message}`);
      }
    })();
    return () => {
      cancelled = true;
    };
  }, [api, study, segmented, seriesByRole]);

  const toggle = (number: number) => {
    const next = new Set(hidden);
    if (next.has(number)) next.delete(number);
    else next.add(number);
    setHidden(next);
    for (const v of VIEWPORTS) segmentation.config.visibility.setSegmentIndexVisibility(v.id, { segmentationId: SEG_ID, type: LABELMAP }, number, !next.has(number));
    renderingEngine().renderViewports(VIEWPORTS.map((v) => v.id));
  };

  const choosePreset = (id: string) => {
    const engine = renderingEngine();
    const first = engine.getViewport('axial') as Types.IVolumeViewport | undefined;
    if (!first) return;
    if (!baseVoi.current) baseVoi.current = ((first.getProperties() ?? {}).voiRange as VoiRange | undefined) ?? null;
    if (!baseVoi.current) return;
    const range = applyPreset(baseVoi.current, PRESETS.find((p) => p.id === id)!);
    for (const v of VIEWPORTS) (engine.getViewport(v.id) as Types.IVolumeViewport).setProperties({ voiRange: range });
    engine.renderViewports(VIEWPORTS.map((v) => v.id));
    setPreset(id);
  };

  return (
    <div className="viewer" data-overlay-ready={overlayReady} data-frame-ready={frameReady}>
      <div className="viewer-toolbar">
        <a href="#/">← Worklist</a>
        <span className="study-title">
          {study ? `${study.patient_name || study.patient_id || 'Study'} · ${study.study_description}` : '…'}
        </span>
        <span className="group" role="group" aria-label="Sequence">
          {ROLES.map((r) => (
            <button key={r} className={r === role ? 'active' : ''} disabled={!seriesByRole[r]} onClick={() => setRole(r)}>
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
        {status && <span className="muted">{status}</span>}
      </div>
      {error && <div className="error" role="alert">{error}</div>}
      {job && job.state !== 'succeeded' && (
        <div className={job.state === 'failed' ? 'error' : 'notice'} role="status">
          {job.state === 'failed'
            ? `The segmentation failed: ${job.error ?? 'no reason given'}. Ask a radiologist to start it again.`
            : `The segmentation is still running (${job.stage || job.state}); the overlay appears when it is done. Reload in a moment.`}
        </div>
      )}
      <div className="viewer-body">
        <div className="viewports">
          {VIEWPORTS.map((v) => (
            <div key={v.id} className="viewport-cell">
              <div className="viewport-label">{v.label}</div>
              <div
                className="viewport"
                data-viewport={v.id}
                ref={(el) => void (elements.current[v.id] = el)}
                onContextMenu={(e) => e.preventDefault()}
              />
            </div>
          ))}
        </div>
        <aside className="side-panel">
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
              </li>
            ))}
          </ul>
          {segmented && <Measurements api={api} studyUid={studyUid} />}
          <p className="muted small">Research use only — not for clinical decisions.</p>
        </aside>
      </div>
    </div>
  );
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
