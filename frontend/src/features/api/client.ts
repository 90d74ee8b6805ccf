// The gateway's API (same origin). Every call carries the bearer token; a 401 triggers one token
// refresh and one retry; a second 401 (or a failed refresh) ends the session.
import { Session, SessionExpired, errorDetail } from '../auth/session';
import type { NewVersionBody } from '../editing/labelmap';
import type { SegVersion } from '../editing/versions';
import type { Report, ReportVersion, Section } from '../report/report';

export interface Series {
  series_instance_uid: string;
  series_number: number | null;
  modality: string;
  series_description: string;
  number_of_instances: number;
  role: string | null;
}

export type JobState = 'queued' | 'running' | 'succeeded' | 'failed';

export interface Job {
  id: string;
  state: JobState;
  stage: string;
  progress: number;
  attempts: number;
  error: string | null;
  timings_s: Record<string, number>;
  seg_series_instance_uid: string | null;
  seg_sop_instance_uid: string | null;
  nifti_paths?: Record<string, string>; // "brain_mask" when brain extraction ran
  created_at: string;
  finished_at: string | null;
}

export interface Study {
  study_instance_uid: string;
  patient_id: string;
  patient_name: string;
  patient_sex: string;
  study_date: string;
  study_description: string;
  accession_number: string;
  project: string;
  status: string;
  missing_sequences: string[];
  processing_note?: string | null; // why a study was not processed (status not_processed)
  created_at: string;
  series: Series[];
  latest_job: Job | null;
}

export class ApiError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
    this.name = 'ApiError';
  }
}

export class Api {
  constructor(readonly session: Session, private readonly fetchFn: typeof fetch = (...a) => fetch(...a)) {}

  /** fetch with the bearer token, one refresh-and-retry on 401. Non-2xx answers throw ApiError. */
  async request(path: string, init: RequestInit = {}): Promise<Response> {
    let response = await this.send(path, init, await this.session.accessToken());
    if (response.status === 401) {
      const fresh = await this.session.refresh();
      response = await this.send(path, init, fresh.accessToken);
      if (response.status === 401) {
        const error = new SessionExpired();
        this.session.signOut(error.message);
        throw error;
      }
    }
    if (!response.ok) throw new ApiError(response.status, await errorDetail(response));
    return response;
  }

  private send(path: string, init: RequestInit, token: string): Promise<Response> {
    const headers = new Headers(init.headers);
    headers.set('authorization', `Bearer ${token}`);
    return this.fetchFn(path, { ...init, headers });
  }

  async json<T>(path: string, init?: RequestInit): Promise<T> {
    return (await (await this.request(path, init)).json()) as T;
  }

  studies(filters: { search?: string; status?: string; limit?: number } = {}): Promise<Study[]> {
    const params = new URLSearchParams();
    if (filters.search) params.set('search', filters.search);
    if (filters.status) params.set('status', filters.status);
    if (filters.limit) params.set('limit', String(filters.limit));
    const query = params.toString();
    return this.json<Study[]>(`/api/studies${query ? `?${query}` : ''}`);
  }

  study(uid: string): Promise<Study> {
    return this.json<Study>(`/api/studies/${encodeURIComponent(uid)}`);
  }

  job(id: string): Promise<Job> {
    return this.json<Job>(`/api/jobs/${encodeURIComponent(id)}`);
  }

  measurements(uid: string): Promise<Record<string, unknown>> {
    return this.json(`/api/studies/${encodeURIComponent(uid)}/measurements`);
  }

  me(): Promise<Me> {
    return this.json<Me>('/api/auth/me');
  }

  /** The DICOM-SEG of a version (the latest when none is given). */
  async segmentation(uid: string, version?: number): Promise<ArrayBuffer> {
    const query = version === undefined ? '' : `?version=${version}`;
    return (await this.request(`/api/studies/${encodeURIComponent(uid)}/segmentation${query}`)).arrayBuffer();
  }

  segmentationVersions(uid: string): Promise<SegVersion[]> {
    return this.json<SegVersion[]>(`/api/studies/${encodeURIComponent(uid)}/segmentation/versions`);
  }

  saveSegmentation(uid: string, body: NewVersionBody): Promise<{ version: number; job_id: string }> {
    return this.json(`/api/studies/${encodeURIComponent(uid)}/segmentation/versions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
  }

  report(uid: string): Promise<Report> {
    return this.json<Report>(`/api/studies/${encodeURIComponent(uid)}/report`);
  }

  editReportSection(uid: string, section: Section, text: string): Promise<Report> {
    return this.json<Report>(`/api/studies/${encodeURIComponent(uid)}/report/sections/${section}`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ text }),
    });
  }

  reportVersions(uid: string): Promise<{ versions: ReportVersion[] }> {
    return this.json(`/api/studies/${encodeURIComponent(uid)}/report/versions`);
  }

  reportDiff(uid: string, from: number, to: number): Promise<{ sections: { section: string; changed: boolean; diff: string }[] }> {
    return this.json(`/api/studies/${encodeURIComponent(uid)}/report/diff?from=${from}&to=${to}`);
  }

  signReport(uid: string): Promise<Report> {
    return this.json<Report>(`/api/studies/${encodeURIComponent(uid)}/report/sign`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
  }

  addReportAddendum(uid: string, text: string): Promise<Report> {
    return this.json<Report>(`/api/studies/${encodeURIComponent(uid)}/report/addenda`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ text }),
    });
  }

  addReportScreenshot(uid: string, png: Blob, caption: string): Promise<Report> {
    const form = new FormData();
    form.append('screenshots', png, 'viewports.png');
    form.append('captions', caption);
    return this.json<Report>(`/api/studies/${encodeURIComponent(uid)}/report/screenshots`, { method: 'POST', body: form });
  }

  async reportPdf(uid: string): Promise<Blob> {
    return (await this.request(`/api/studies/${encodeURIComponent(uid)}/report.pdf`)).blob();
  }
}

export interface Me {
  subject: string;
  role: string;
  projects: string[] | null;
  kind: string;
  deidentified: boolean;
}
