// Upload with progress: fetch has no upload progress, XMLHttpRequest does.
import type { Session } from '../auth/session';

export interface UploadProgress {
  loaded: number;
  total: number;
  fraction: number;
}

export function progressOf(loaded: number, total: number): UploadProgress {
  const fraction = total > 0 ? Math.min(1, Math.max(0, loaded / total)) : 0;
  return { loaded, total, fraction };
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

export function contentTypeFor(name: string): string {
  return /\.zip$/i.test(name) ? 'application/zip' : 'application/dicom';
}

export interface UploadAnswer {
  status: number;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  retryAfterS?: number | null; // from Retry-After (503: the gateway holds its upload budget)
}

export function retryAfterSeconds(header: string | null): number | null {
  if (header === null || !/^\d+$/.test(header.trim())) return null;
  return Math.max(1, Number(header.trim()));
}

export async function uploadStudy(
  session: Session,
  files: File[],
  onProgress: (p: UploadProgress) => void,
  makeXhr: () => XMLHttpRequest = () => new XMLHttpRequest(),
): Promise<UploadAnswer> {
  const form = new FormData();
  for (const file of files) form.append('files', new Blob([file], { type: contentTypeFor(file.name) }), file.name);
  const token = await session.accessToken();
  return new Promise((resolve, reject) => {
    const xhr = makeXhr();
    xhr.open('POST', '/api/studies');
    xhr.setRequestHeader('authorization', `Bearer ${token}`);
    xhr.upload.onprogress = (event) => onProgress(progressOf(event.loaded, event.total));
    xhr.onerror = () => reject(new Error('The upload failed: the server is unreachable.'));
    xhr.onload = () => {
      let body: unknown = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        body = { detail: xhr.responseText };
      }
      resolve({ status: xhr.status, body, retryAfterS: retryAfterSeconds(xhr.getResponseHeader('retry-after')) });
    };
    xhr.send(form);
  });
}

// The gateway admits uploads by size before reading them: while it holds other uploads it answers
// 503 with Retry-After, and the upload is simply sent again after that wait (a few times at most).
export async function uploadStudyWhenAdmitted(
  send: () => Promise<UploadAnswer>,
  onWait: (seconds: number) => void,
  sleep: (ms: number) => Promise<void> = (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
  maxAttempts = 12,
): Promise<UploadAnswer> {
  for (let attempt = 1; ; attempt++) {
    const answer = await send();
    if (answer.status !== 503 || !answer.retryAfterS || attempt >= maxAttempts) return answer;
    onWait(answer.retryAfterS);
    await sleep(answer.retryAfterS * 1000);
  }
}
