// The study viewer: three MPR views of the chosen sequence with the tumour overlay, the 3D tumour
// surface, segment visibility and opacity, brush edits saved as new segmentation versions, the
// measurements and the report. The parts live beside it: use* hooks (state and Cornerstone effects)
// and components (what they show).
import { useCallback, useEffect, useMemo, useRef, useState } from 'react';
import type { Api, Study } from '../api/client';
import { ApiError } from '../api/client';
import { canEditSegmentation } from '../editing/versions';
import { ReportPanel } from '../report/ReportPanel';
import { renderingEngine } from './cornerstone';
import { DEFAULT_SEGMENTS, MPR_IDS } from './constants';
import { EditPanel } from './EditPanel';
import { Measurements } from './Measurements';
import { MissingFramesNotice } from './MissingFramesNotice';
import { SegmentList } from './SegmentList';
import { prefetchSeg } from './segPrefetch';
import { useTimings } from './timings';
import { useEditing } from './useEditing';
import { useSaveSegmentation } from './useSaveSegmentation';
import { useSegmentAppearance } from './useSegmentAppearance';
import { useSegmentationVersions } from './useSegmentationVersions';
import { useSeriesDisplay } from './useSeriesDisplay';
import { useSurface3d } from './useSurface3d';
import { showSeg, useTumourOverlay } from './useTumourOverlay';
import { useViewports } from './useViewports';
import { useWindowPreset } from './useWindowPreset';
import { VersionList } from './VersionList';
import { captureViewports } from './viewerHelpers';
import { ViewportGrid } from './ViewportGrid';
import { JobNotice, ViewerToolbar, type Panel } from './ViewerToolbar';

export function Viewer({ api, studyUid }: { api: Api; studyUid: string }) {
  const elements = useRef<Record<string, HTMLDivElement | null>>({});
  const [study, setStudy] = useState<Study | null>(null);
  const [role, setRole] = useState<string | null>(null); // the user's role
  const [error, setError] = useState<string | null>(null);
  const [sequence, setSequence] = useState<string>('T1c');
  const [panel, setPanel] = useState<Panel>('segments');
  const timings = useTimings();

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

  const seriesByRole = useMemo(() => {
    const out: Record<string, string> = {};
    for (const s of study?.series ?? []) if (s.role) out[s.role] = s.series_instance_uid;
    return out;
  }, [study]);
  const t1cUid = seriesByRole.T1c;
  const mayEdit = canEditSegmentation(role);

  useViewports(elements);
  const { preset, choosePreset, baseVoi } = useWindowPreset();
  const { status, frameReady, viewportsShown, tumourCentre } = useSeriesDisplay({
    api, study, sequence, seriesByRole, elements, timings, baseVoi, setError,
  });
  const { segments, setSegments, overlayReady, t1cVolume } = useTumourOverlay({
    api, study, t1cUid, elements, timings, viewportsShown, tumourCentre, setError,
  });
  const { versions, versionsProblem, shownVersion, setShownVersion, loadVersions } = useSegmentationVersions(api, studyUid, overlayReady);
  const { hidden, opacities, toggle, chooseOpacity } = useSegmentAppearance();
  const { surface, buildSurface } = useSurface3d({ elements, overlayReady, segments, hidden, timings });
  const editing = useEditing(overlayReady, buildSurface);
  const { forgetStrokes } = editing;

  const reloadVersion = useCallback(
    async (version: number) => {
      const [buffer, reference] = await Promise.all([api.segmentation(studyUid, version), t1cVolume()]);
      const { segs } = await showSeg(buffer, reference);
      renderingEngine().renderViewports(MPR_IDS);
      setSegments(segs);
      setShownVersion(version);
      forgetStrokes();
      void buildSurface();
    },
    [api, studyUid, t1cVolume, buildSurface, setSegments, setShownVersion, forgetStrokes],
  );
  const { saving, saveError, setSaveError, measurementsKey, save } = useSaveSegmentation({
    api, studyUid, t1cUid, versions, shownVersion, loadVersions, reloadVersion, timings,
  });
  const capture = useCallback(() => captureViewports(elements), []);

  const job = study?.latest_job ?? null;
  const segmented = !!study?.series && (study.latest_job?.state === 'succeeded' || (versions?.length ?? 0) > 0);

  return (
    <div
      className="viewer"
      data-overlay-ready={overlayReady}
      data-frame-ready={frameReady}
      data-surface={surface.state}
      data-shown-version={shownVersion ?? ''}
      data-strokes={editing.strokes}
    >
      <ViewerToolbar
        api={api}
        study={study}
        seriesByRole={seriesByRole}
        sequence={sequence}
        onSequence={setSequence}
        preset={preset}
        onPreset={choosePreset}
        mode={editing.mode}
        onMode={editing.chooseMode}
        frameReady={frameReady}
        overlayReady={overlayReady}
        reference={t1cVolume}
        panel={panel}
        onPanel={setPanel}
        segmented={segmented}
        status={status}
      />
      {error && <div className="error" role="alert">{error}</div>}
      <MissingFramesNotice studyUid={studyUid} study={study} />
      {job && job.state !== 'succeeded' && <JobNotice api={api} job={job} onDone={() => void loadStudy()} />}
      <div className="viewer-body">
        <ViewportGrid elements={elements} editing={editing} surface={surface} />
        <aside className={`side-panel ${panel === 'report' ? 'wide' : ''}`}>
          {panel === 'report' ? (
            <ReportPanel api={api} studyUid={studyUid} role={role} captureViewports={capture} />
          ) : (
            <>
              <h3>Segments</h3>
              {!segmented && <p className="muted">No segmentation yet.</p>}
              <SegmentList segments={segments} hidden={hidden} opacities={opacities} onToggle={toggle} onOpacity={chooseOpacity} />
              {overlayReady && (
                <EditPanel
                  mayEdit={mayEdit}
                  role={role}
                  editing={editing}
                  segments={segments.length ? segments : DEFAULT_SEGMENTS}
                  saving={saving}
                  saveError={saveError}
                  versionsProblem={versionsProblem}
                  onSave={() => void save()}
                />
              )}
              {versions && versions.length > 0 && (
                <VersionList
                  versions={versions}
                  shownVersion={shownVersion}
                  busy={!!saving}
                  onShow={(v) => void reloadVersion(v).catch((e: Error) => setSaveError(e.message))}
                />
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
