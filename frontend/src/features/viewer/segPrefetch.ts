import type { Api } from '../api/client';

// The DICOM-SEG is requested as soon as the viewer opens, in parallel with the study record and the
// volume's metadata; the overlay takes it (once: a later opening must not get an older version).
const segPrefetch = new Map<string, Promise<ArrayBuffer>>();

export function prefetchSeg(api: Api, uid: string): void {
  if (segPrefetch.has(uid)) return;
  const pending = api.segmentation(uid);
  pending.catch(() => undefined);
  segPrefetch.set(uid, pending);
  setTimeout(() => segPrefetch.get(uid) === pending && segPrefetch.delete(uid), 10_000);
}

export function takeSeg(api: Api, uid: string): Promise<ArrayBuffer> {
  const pending = segPrefetch.get(uid);
  segPrefetch.delete(uid);
  return pending ? pending.catch(() => api.segmentation(uid)) : api.segmentation(uid);
}
