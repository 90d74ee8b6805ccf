import { useEffect, useState } from 'react';
import type { Api, Study } from '../api/client';
import { JobProgress } from '../jobs/JobProgress';

const STATUSES = ['', 'received', 'incomplete', 'ready'];

function jobBadge(study: Study): { text: string; kind: string } {
  const job = study.latest_job;
  if (!job) return { text: study.status === 'incomplete' ? `incomplete (missing ${study.missing_sequences.join(', ')})` : study.status, kind: 'muted' };
  if (job.state === 'succeeded') return { text: 'segmented', kind: 'ok' };
  if (job.state === 'failed') return { text: `failed: ${job.error ?? ''}`, kind: 'bad' };
  return { text: `${job.state} · ${job.stage}`, kind: 'busy' };
}

export function Worklist({ api }: { api: Api }) {
  const [search, setSearch] = useState('');
  const [status, setStatus] = useState('');
  const [studies, setStudies] = useState<Study[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [tick, setTick] = useState(0);

  useEffect(() => {
    let cancelled = false;
    const timer = setTimeout(() => {
      api.studies({ search, status }).then(
        (s) => !cancelled && (setStudies(s), setError(null)),
        (e: Error) => !cancelled && setError(e.message),
      );
    }, 250);
    return () => {
      cancelled = true;
      clearTimeout(timer);
    };
  }, [api, search, status, tick]);

  return (
    <div className="worklist">
      <div className="filters">
        <input type="search" placeholder="Search patient, description, accession…" aria-label="Search" value={search} onChange={(e) => setSearch(e.target.value)} />
        <select aria-label="Status" value={status} onChange={(e) => setStatus(e.target.value)}>
          {STATUSES.map((s) => (
            <option key={s} value={s}>{s || 'any status'}</option>
          ))}
        </select>
        <button onClick={() => setTick(tick + 1)}>Refresh</button>
        <a className="button" href="#/upload">Upload…</a>
      </div>
      {error && <div className="error" role="alert">{error}</div>}
      {!studies && !error && <p className="muted">Loading…</p>}
      {studies && studies.length === 0 && <p className="muted">No studies match.</p>}
      {studies && studies.length > 0 && (
        <table className="studies">
          <thead>
            <tr><th>Patient</th><th>Date</th><th>Description</th><th>Project</th><th>Status</th><th /></tr>
          </thead>
          <tbody>
            {studies.map((s) => {
              const badge = jobBadge(s);
              const active = s.latest_job && (s.latest_job.state === 'queued' || s.latest_job.state === 'running');
              return (
                <tr key={s.study_instance_uid} data-study={s.study_instance_uid}>
                  <td>{s.patient_name || s.patient_id || '—'}</td>
                  <td>{s.study_date}</td>
                  <td>{s.study_description}</td>
                  <td>{s.project}</td>
                  <td>
                    <span className={`badge ${badge.kind}`}>{badge.text}</span>
                    {active && <JobProgress api={api} jobId={s.latest_job!.id} onDone={() => setTick((t) => t + 1)} />}
                  </td>
                  <td><a href={`#/studies/${s.study_instance_uid}`}>Open</a></td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
    </div>
  );
}
