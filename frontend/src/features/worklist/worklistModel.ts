// What the worklist shows: DICOM names and dates formatted for people, one status per study (the
// badge) from one list that the status filter also offers, and the columns' sort order.
import type { Study } from '../api/client';
import { stageName } from '../jobs/stages';

/** A DICOM person name (PN) `Family^Given^Middle^Prefix^Suffix` as "Family, Prefix Given Middle, Suffix";
 * only the first (alphabetic) component group; empty components are left out. */
export function formatPersonName(pn: string | null | undefined): string {
  const alphabetic = (pn ?? '').split('=')[0];
  if (!alphabetic.includes('^')) return alphabetic.trim();
  const [family = '', given = '', middle = '', prefix = '', suffix = ''] = alphabetic.split('^').map((p) => p.trim());
  const rest = [prefix, given, middle].filter(Boolean).join(' ');
  return [family, rest, suffix].filter(Boolean).join(', ');
}

/** A DICOM date (DA) `YYYYMMDD` (or the old `YYYY.MM.DD`) as ISO `YYYY-MM-DD`, the same in every locale;
 * anything else as it came. */
export function formatDicomDate(da: string | null | undefined): string {
  const value = (da ?? '').trim();
  const m = /^(\d{4})\.?(\d{2})\.?(\d{2})$/.exec(value);
  return m ? `${m[1]}-${m[2]}-${m[3]}` : value;
}

export type BadgeKind = 'muted' | 'busy' | 'ok' | 'bad';

/** Every status a worklist badge can show, in the order the status column sorts by. The filter offers
 * exactly these. The study's own status until a job exists, then the latest job's. */
export const WORKLIST_STATUSES = [
  { id: 'receiving', label: 'receiving', kind: 'muted' },
  { id: 'received', label: 'received', kind: 'muted' },
  { id: 'incomplete', label: 'incomplete', kind: 'muted' },
  { id: 'not_processed', label: 'not processed', kind: 'muted' },
  { id: 'ready', label: 'ready', kind: 'muted' },
  { id: 'queued', label: 'queued', kind: 'busy' },
  { id: 'running', label: 'running', kind: 'busy' },
  { id: 'segmented', label: 'segmented', kind: 'ok' },
  { id: 'failed', label: 'failed', kind: 'bad' },
] as const satisfies ReadonlyArray<{ id: string; label: string; kind: BadgeKind }>;

export type WorklistStatus = (typeof WORKLIST_STATUSES)[number]['id'];

const BY_ID = new Map<string, (typeof WORKLIST_STATUSES)[number]>(WORKLIST_STATUSES.map((s) => [s.id, s]));

/** The study's status on the worklist. A study status the list does not know is shown as received. */
export function worklistStatus(study: Pick<Study, 'status' | 'latest_job'>): WorklistStatus {
  const job = study.latest_job;
  if (job) return job.state === 'succeeded' ? 'segmented' : job.state;
  return BY_ID.has(study.status) ? (study.status as WorklistStatus) : 'received';
}

export interface Badge {
  status: WorklistStatus;
  text: string;
  kind: BadgeKind;
  title?: string;
}

/** The badge: the status's label and what goes with it (missing sequences, the stage, the failure). */
export function studyBadge(study: Pick<Study, 'status' | 'latest_job' | 'missing_sequences'> & { processing_note?: string | null }): Badge {
  const status = worklistStatus(study);
  const { label, kind } = BY_ID.get(status)!;
  const job = study.latest_job;
  let text: string = label;
  if (status === 'incomplete' && study.missing_sequences.length) text = `${label} (missing ${study.missing_sequences.join(', ')})`;
  else if (status === 'failed') text = `${label}: ${job?.error ?? 'no reason given'}`;
  else if (job && (status === 'running' || (status === 'queued' && job.stage && job.stage !== 'queued'))) text = `${label} · ${stageName(job.stage)}`;
  return { status, text, kind, title: status === 'not_processed' ? study.processing_note ?? undefined : undefined };
}

export type SortKey = 'name' | 'id' | 'date' | 'status';
export interface Sort {
  key: SortKey;
  dir: 'asc' | 'desc';
}
export const SORT_COLUMNS: ReadonlyArray<{ key: SortKey; label: string }> = [
  { key: 'name', label: 'Patient' },
  { key: 'id', label: 'Patient ID' },
  { key: 'date', label: 'Date' },
  { key: 'status', label: 'Status' },
];
export const DEFAULT_SORT: Sort = { key: 'date', dir: 'desc' };

const collator = new Intl.Collator('en', { sensitivity: 'base', numeric: true });
const STATUS_ORDER = new Map<string, number>(WORKLIST_STATUSES.map((s, i) => [s.id, i]));

function sortValue(study: Study, key: SortKey): string | number {
  switch (key) {
    case 'name':
      return formatPersonName(study.patient_name);
    case 'id':
      return study.patient_id ?? '';
    case 'date':
      return formatDicomDate(study.study_date);
    case 'status':
      return STATUS_ORDER.get(worklistStatus(study)) ?? 0;
  }
}

/** The studies in the column's order (a copy); empty values last either way, ties by date then name. */
export function sortStudies(studies: readonly Study[], sort: Sort): Study[] {
  const sign = sort.dir === 'asc' ? 1 : -1;
  const compare = (a: Study, b: Study, key: SortKey): number => {
    const [x, y] = [sortValue(a, key), sortValue(b, key)];
    if (typeof x === 'number' && typeof y === 'number') return x - y;
    if (x === '' || y === '') return x === y ? 0 : x === '' ? Infinity : -Infinity;
    return collator.compare(String(x), String(y));
  };
  return [...studies].sort((a, b) => {
    const primary = compare(a, b, sort.key);
    if (primary === Infinity || primary === -Infinity) return primary > 0 ? 1 : -1; // empty last
    if (primary !== 0) return sign * primary;
    for (const key of ['date', 'name'] as const) {
      if (key === sort.key) continue;
      const tie = compare(a, b, key);
      if (tie !== 0 && Number.isFinite(tie)) return tie;
    }
    return 0;
  });
}

/** The next sort after a click on a column's header: the same column flips, another starts ascending
 * (dates start with the newest). */
export function nextSort(current: Sort, key: SortKey): Sort {
  if (current.key === key) return { key, dir: current.dir === 'asc' ? 'desc' : 'asc' };
  return { key, dir: key === 'date' ? 'desc' : 'asc' };
}

/** The studies with that worklist status ('' : all). */
export function filterByStatus(studies: readonly Study[], status: string): Study[] {
  return status ? studies.filter((s) => worklistStatus(s) === status) : [...studies];
}
