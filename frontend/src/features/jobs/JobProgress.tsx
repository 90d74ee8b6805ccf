import { useEffect, useState } from 'react';
import type { Api, Job } from '../api/client';
import { followJob, stageLabel } from './sse';
import { stageName, stageStates } from './stages';

export function JobProgress({ api, jobId, onDone }: { api: Api; jobId: string; onDone?: (job: Job) => void }) {
  const [job, setJob] = useState<Job | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    const abort = new AbortController();
    followJob(api, jobId, setJob, abort.signal).then(
      (final) => onDone?.(final),
      (e: Error) => !abort.signal.aborted && setError(e.message),
    );
    return () => abort.abort();
  }, [api, jobId]); // eslint-disable-line react-hooks/exhaustive-deps
  if (error) return <div className="error">Job progress unavailable: {error}</div>;
  if (!job) return <div className="muted">Waiting for the job…</div>;
  return (
    <div className="job" data-job-state={job.state} data-job-stage={job.stage}>
      <div>
        <strong>Segmentation:</strong> {stageLabel(job)}
      </div>
      <progress max={1} value={job.state === 'succeeded' ? 1 : job.progress} />
      <ol className="stages">
        {stageStates(job.stage, job.state === 'succeeded').map(({ stage, state }) => (
          <li key={stage} className={state} data-stage={stage}>
            {stageName(stage)}
          </li>
        ))}
      </ol>
      {job.state === 'failed' && <div className="error">The job failed: {job.error ?? 'no reason given'}</div>}
    </div>
  );
}
