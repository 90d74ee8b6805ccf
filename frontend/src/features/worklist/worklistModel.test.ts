import { describe, expect, it } from 'vitest';
import type { Job, Study } from '../api/client';
import {
  WORKLIST_STATUSES,
  filterByStatus,
  formatDicomDate,
  formatPersonName,
  nextSort,
  sortStudies,
  studyBadge,
  worklistStatus,
} from './worklistModel';

function study(over: Partial<Study> & { uid: string }, job?: Partial<Job>): Study {
  const { uid, ...rest } = over;
  return {
    study_instance_uid: uid, patient_id: '', patient_name: '', patient_sex: '', study_date: '', study_description: '',
    accession_number: '', project: 'p', status: 'ready', missing_sequences: [], created_at: '', series: [],
    latest_job: job ? ({ id: 'j', state: 'queued', stage: 'queued', progress: 0, attempts: 0, error: null, timings_s: {},
      seg_series_instance_uid: null, seg_sop_instance_uid: null, created_at: '', finished_at: null, ...job } as Job) : null,
    ...rest,
  };
}

describe('names and dates', () => {
  it('formats DICOM person names', () => {
    expect(formatPersonName('Heldout^DU7294')).toBe('Heldout, DU7294');
    expect(formatPersonName('Doe^Jane^Q^Dr^PhD')).toBe('Doe, Dr Jane Q, PhD');
    expect(formatPersonName('Doe')).toBe('Doe');
    expect(formatPersonName('Doe^^^')).toBe('Doe');
    expect(formatPersonName('Yamada^Tarou=山田^太郎')).toBe('Yamada, Tarou');
    expect(formatPersonName('')).toBe('');
    expect(formatPersonName(undefined)).toBe('');
  });

  it('formats DICOM dates as ISO dates', () => {
    expect(formatDicomDate('20261203')).toBe('2026-12-03');
    expect(formatDicomDate('2026.12.03')).toBe('2026-12-03');
    expect(formatDicomDate('')).toBe('');
    expect(formatDicomDate('2026')).toBe('2026');
  });
});

describe('statuses', () => {
  it('derives each badge status from the study and its latest job, all of them in the filter list', () => {
    const ids = WORKLIST_STATUSES.map((s) => s.id);
    const cases: Array<[Study, string]> = [
      [study({ uid: '1', status: 'received' }), 'received'],
      [study({ uid: '2', status: 'incomplete', missing_sequences: ['T2'] }), 'incomplete'],
      [study({ uid: '3', status: 'not_processed', processing_note: 'no rule matched' }), 'not_processed'],
      [study({ uid: '4' }, { state: 'queued' }), 'queued'],
      [study({ uid: '5' }, { state: 'running', stage: 'coregister' }), 'running'],
      [study({ uid: '6' }, { state: 'succeeded', stage: 'done' }), 'segmented'],
      [study({ uid: '7' }, { state: 'failed', error: 'boom' }), 'failed'],
      [study({ uid: '8', status: 'something-new' }), 'received'],
    ];
    for (const [s, expected] of cases) {
      expect(worklistStatus(s)).toBe(expected);
      expect(ids).toContain(studyBadge(s).status);
    }
    expect(studyBadge(cases[1][0]).text).toBe('incomplete (missing T2)');
    expect(studyBadge(cases[2][0])).toMatchObject({ text: 'not processed', title: 'no rule matched' });
    expect(studyBadge(cases[4][0]).text).toBe('running · coregister');
    expect(studyBadge(study({ uid: 'r' }, { state: 'queued', stage: 'waiting-retry' })).text).toBe('queued · waiting to retry');
    expect(studyBadge(cases[6][0])).toMatchObject({ text: 'failed: boom', kind: 'bad' });
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('filters by the badge status', () => {
    const list = [study({ uid: 'a' }, { state: 'succeeded' }), study({ uid: 'b' }), study({ uid: 'c' }, { state: 'failed' })];
    expect(filterByStatus(list, 'segmented').map((s) => s.study_instance_uid)).toEqual(['a']);
    expect(filterByStatus(list, 'ready').map((s) => s.study_instance_uid)).toEqual(['b']);
    expect(filterByStatus(list, '').length).toBe(3);
  });
});

describe('sorting', () => {
  const list = [
    study({ uid: 'a', patient_name: 'beta^Ann', patient_id: 'P10', study_date: '20260102' }, { state: 'succeeded' }),
    study({ uid: 'b', patient_name: 'Alpha^Bob', patient_id: 'P9', study_date: '20261203' }),
    study({ uid: 'c', patient_name: '', patient_id: '', study_date: '' }, { state: 'failed' }),
    study({ uid: 'd', patient_name: 'Gamma', patient_id: 'P100', study_date: '20250101' }, { state: 'running' }),
  ];
  const order = (key: 'name' | 'id' | 'date' | 'status', dir: 'asc' | 'desc') => sortStudies(list, { key, dir }).map((s) => s.study_instance_uid).join('');

  it('sorts by each column both ways, empty values last', () => {
    expect(order('name', 'asc')).toBe('badc');
    expect(order('name', 'desc')).toBe('dabc');
    expect(order('id', 'asc')).toBe('badc'); // numeric-aware: P9 < P10 < P100
    expect(order('date', 'desc')).toBe('badc');
    expect(order('date', 'asc')).toBe('dabc');
    expect(order('status', 'asc')).toBe('bdac'); // ready, running, segmented, failed
    expect(list.map((s) => s.study_instance_uid).join('')).toBe('abcd'); // not sorted in place
  });

  it('flips the same column, starts another ascending (dates newest first)', () => {
    expect(nextSort({ key: 'name', dir: 'asc' }, 'name')).toEqual({ key: 'name', dir: 'desc' });
    expect(nextSort({ key: 'name', dir: 'desc' }, 'id')).toEqual({ key: 'id', dir: 'asc' });
    expect(nextSort({ key: 'name', dir: 'asc' }, 'date')).toEqual({ key: 'date', dir: 'desc' });
  });
});
