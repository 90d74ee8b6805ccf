import type { Types } from '@cornerstonejs/core';
import type { Api, Job, Study } from '../api/client';
import { JobProgress } from '../jobs/JobProgress';
import { formatPersonName } from '../worklist/worklistModel';
import { BrainMaskToggle } from './BrainMaskToggle';
import type { EditMode } from './cornerstone';
import { MPR_IDS, ROLES, SEG_ID } from './constants';
import { PRESETS } from './presets';

export type Panel = 'segments' | 'report';

/** The viewer's top bar: back to the worklist, the study, the sequence, the window preset, crosshairs,
 * the brain mask outline, the side panel (segments or report) and the loading status. */
export function ViewerToolbar(props: {
  api: Api;
  study: Study | null;
  seriesByRole: Record<string, string>;
  sequence: string;
  onSequence: (role: string) => void;
  preset: string;
  onPreset: (id: string) => void;
  mode: EditMode;
  onMode: (mode: EditMode) => void;
  frameReady: boolean;
  overlayReady: boolean;
  reference: () => Promise<Types.IImageVolume>;
  panel: Panel;
  onPanel: (panel: Panel) => void;
  segmented: boolean;
  status: string;
}) {
  const { api, study, seriesByRole, sequence, preset, mode, frameReady, overlayReady, panel, segmented, status } = props;
  return (
    <div className="viewer-toolbar">
      <a href="#/">← Worklist</a>
      <span className="study-title">
        {study ? `${formatPersonName(study.patient_name) || study.patient_id || 'Study'}${study.patient_id ? ` (${study.patient_id})` : ''} · ${study.study_description}` : '…'}
      </span>
      <span className="group" role="group" aria-label="Sequence">
        {ROLES.map((r) => (
          <button key={r} className={r === sequence ? 'active' : ''} disabled={!seriesByRole[r]} onClick={() => props.onSequence(r)}>
            {r}
          </button>
        ))}
      </span>
      <label>
        Window{' '}
        <select aria-label="Window/level preset" value={preset} onChange={(e) => props.onPreset(e.target.value)}>
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
        onClick={() => props.onMode(mode === 'crosshairs' ? 'navigate' : 'crosshairs')}
        data-mode="crosshairs"
        title="Click or drag in one view to move the other two to that point"
      >
        Crosshairs
      </button>
      <BrainMaskToggle api={api} study={study} reference={props.reference} viewportIds={MPR_IDS} activeSegmentationId={SEG_ID} ready={overlayReady} />
      <span className="group" role="group" aria-label="Panel">
        <button className={panel === 'segments' ? 'active' : ''} onClick={() => props.onPanel('segments')}>Segments</button>
        <button className={panel === 'report' ? 'active' : ''} onClick={() => props.onPanel('report')} disabled={!segmented}>Report</button>
      </span>
      {status && <span className="muted loading-status">{status}</span>}
    </div>
  );
}

/** A segmentation job that has not succeeded: its reason when it failed, its live progress otherwise. */
export function JobNotice({ api, job, onDone }: { api: Api; job: Job; onDone: () => void }) {
  return (
    <div className={job.state === 'failed' ? 'error' : 'notice'} role="status" data-job-state={job.state}>
      {job.state === 'failed' ? (
        `The segmentation failed: ${job.error ?? 'no reason given'}. Ask a radiologist or an administrator to start it again.`
      ) : (
        <>
          The segmentation is still running; the overlay appears when it is done.
          <JobProgress api={api} jobId={job.id} onDone={onDone} />
        </>
      )}
    </div>
  );
}
