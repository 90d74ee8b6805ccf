import { useEffect, useMemo, useState } from 'react';
import type { Api, Study } from '../api/client';
import { JobProgress } from '../jobs/JobProgress';
import {
  DEFAULT_SORT,
  SORT_COLUMNS,
  WORKLIST_STATUSES,
  filterByStatus,
  formatDicomDate,
  formatPersonName,
  nextSort,
  sortStudies,
  studyBadge,
  type Sort,
} from './worklistModel';

// The studies the worklist fetches at most (the gateway's limit); status filter and sort apply to them.
const LIMIT = 500;

export function Worklist({ api }: { api: Api }) {
  const [search, setSearch] = useState('');
  const [status, setStatus] = useState('');
  const [sort, setSort] = useState<Sort>(DEFAULT_SORT);
  const [studies, setStudies] = useState<Study[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [tick, setTick] = useState(0);

  useEffect(() => {
    let cancelled = false;
    const timer = setTimeout(() => {
      api.studies({ search, limit: LIMIT }).then(
        (s) => !cancelled && (setStudies(s), setError(null)),
        (e: Error) => !cancelled && setError(e.message),
      );
    }, 250);
    return () => {
      cancelled = true;
      clearTimeout(timer);
    };
  }, [api, search, tick]);

  // the status filter is the badge's status (a job's state once there is one), so it filters here
  const shown = useMemo(() => (studies ? sortStudies(filterByStatus(studies, status), sort) : null), [studies, status, sort]);

  return (
    <div className="worklist">
      <div className="filters">
        <input type="search" placeholder="Search patient, description, accession…" aria-label="Search" value={search} onChange={(e) => setSearch(e.target.value)} />
        <select aria-label="Status" value={status} onChange={(e) => setStatus(e.target.value)}>
          <option value="">any status</option>
          {WORKLIST_STATUSES.map((s) => (
            <option key={s.id} value={s.id}>{s.label}</option>
          ))}
        </select>
        <button onClick={() => setTick(tick + 1)}>Refresh</button>
        <a className="button" href="#/upload">Upload…</a>
      </div>
      {error && <div className="error" role="alert">{error}</div>}
      {!shown && !error && <p className="muted">Loading…</p>}
      {shown && shown.length === 0 && <p className="muted">No studies match.</p>}
      {shown && shown.length > 0 && (
        <table className="studies" data-sort={`${sort.key}:${sort.dir}`}>
          <thead>
            <tr>
              {SORT_COLUMNS.slice(0, 3).map((c) => <SortHeader key={c.key} column={c} sort={sort} onSort={setSort} />)}
              <th>Description</th>
              <th>Project</th>
              <SortHeader column={SORT_COLUMNS[3]} sort={sort} onSort={setSort} />
              <th />
            </tr>
          </thead>
          <tbody>
            {shown.map((s) => {
              const badge = studyBadge(s);
              const active = s.latest_job && (s.latest_job.state === 'queued' || s.latest_job.state === 'running');
              return (
                <tr key={s.study_instance_uid} data-study={s.study_instance_uid}>
                  <td data-col="name" title={s.patient_name}>{formatPersonName(s.patient_name) || '—'}</td>
                  <td data-col="id">{s.patient_id || '—'}</td>
                  <td data-col="date">{formatDicomDate(s.study_date) || '—'}</td>
                  <td>{s.study_description}</td>
                  <td>{s.project}</td>
                  <td data-col="status">
                    <span className={`badge ${badge.kind}`} data-status={badge.status} title={badge.title}>{badge.text}</span>
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

function SortHeader({ column, sort, onSort }: { column: (typeof SORT_COLUMNS)[number]; sort: Sort; onSort: (s: Sort) => void }) {
  const active = sort.key === column.key;
  return (
    <th aria-sort={active ? (sort.dir === 'asc' ? 'ascending' : 'descending') : 'none'} data-sort-key={column.key}>
      <button type="button" className="sort" onClick={() => onSort(nextSort(sort, column.key))}>
        {column.label}
        <span className="sort-indicator" aria-hidden="true">{active ? (sort.dir === 'asc' ? ' ▲' : ' ▼') : ' ↕'}</span>
      </button>
    </th>
  );
}
