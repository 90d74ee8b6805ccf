// Segmentation versions (`GET /api/studies/{uid}/segmentation/versions`): the model's and each saved
// edit, who made it and when, with voxel counts per segment.

export interface SegVersion {
  version: number;
  source: 'model' | 'edited';
  created_by: string | null;
  created_at: string;
  job_id: string | null;
  seg_series_instance_uid: string | null;
  seg_sop_instance_uid: string | null;
  state?: 'queued' | 'running' | 'succeeded' | 'failed'; // of the job that makes the version
  voxel_counts: Record<string, number> | null; // null until the version's job has succeeded
}

/** A version whose DICOM-SEG exists (older servers send no state: their versions all have one). */
export function hasResult(v: Pick<SegVersion, 'state'>): boolean {
  return v.state === undefined || v.state === 'succeeded';
}

/** What `GET …/segmentation` shows by default: the highest version with a result. */
export function latestWithResult(versions: SegVersion[]): SegVersion | null {
  return latestVersion(versions.filter(hasResult));
}

/** Newest first, whatever order the server sends. */
export function sortVersions(versions: SegVersion[]): SegVersion[] {
  return [...versions].sort((a, b) => b.version - a.version);
}

/** The highest number, also when pending or failed: the base of the next save. */
export function latestVersion(versions: SegVersion[]): SegVersion | null {
  return versions.reduce<SegVersion | null>((best, v) => (!best || v.version > best.version ? v : best), null);
}

export function totalVoxels(v: Pick<SegVersion, 'voxel_counts'>): number {
  return Object.values(v.voxel_counts ?? {}).reduce((a, b) => a + (Number(b) || 0), 0);
}

export function describeVersion(v: SegVersion, now: Date = new Date()): string {
  const who = v.source === 'model' ? 'AI model' : (v.created_by ?? 'unknown user');
  const state = v.state === 'failed' ? ' · failed' : v.state === 'queued' || v.state === 'running' ? ' · saving…' : '';
  return `v${v.version} · ${who} · ${formatWhen(v.created_at, now)}${state}`;
}

export function formatWhen(iso: string, now: Date = new Date()): string {
  const t = new Date(iso);
  if (Number.isNaN(t.getTime())) return iso;
  const pad = (n: number) => String(n).padStart(2, '0');
  const time = `${pad(t.getHours())}:${pad(t.getMinutes())}`;
  const sameDay = t.getFullYear() === now.getFullYear() && t.getMonth() === now.getMonth() && t.getDate() === now.getDate();
  return sameDay ? `today ${time}` : `${t.getFullYear()}-${pad(t.getMonth() + 1)}-${pad(t.getDate())} ${time}`;
}

/** Roles allowed to edit the segmentation (the gateway checks too). */
export const EDIT_ROLES = new Set(['admin', 'radiologist', 'clinician']);

export function canEditSegmentation(role: string | null | undefined): boolean {
  return !!role && EDIT_ROLES.has(role);
}

/** What the user sees when saving fails, from the gateway's status code and message. */
export function saveErrorMessage(status: number, detail: string): string {
  if (status === 409)
    return 'Someone saved a newer version of this segmentation meanwhile: show it from the versions list (your unsaved strokes are discarded) and edit again, so that their changes are not overwritten.';
  if (status === 403) return 'Your role may not edit segmentations.';
  if (status === 404 || status === 405) return 'This server cannot store edited segmentations yet.';
  if (status === 413) return 'The edited labelmap is too large for the server.';
  return `The edit could not be saved: ${detail}`;
}
