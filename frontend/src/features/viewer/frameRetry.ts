// Frame requests that fail are tried again with backoff; a frame that still fails is recorded so that
// the viewer can say which slices are missing (they stay black in the volume).

/** The waits before each retry: 4 tries in all. */
export const FRAME_RETRY_DELAYS_MS: readonly number[] = [250, 500, 1000];

/** The HTTP status of a failed frame request: the image loader rejects with the XMLHttpRequest, or an
 * Error carrying `status`; 0 for a network error; undefined when it was no request (e.g. decoding). */
export function frameErrorStatus(error: unknown): number | undefined {
  if (error && typeof error === 'object' && 'status' in error && typeof (error as { status: unknown }).status === 'number')
    return (error as { status: number }).status;
  if (error instanceof TypeError) return 0; // fetch: network error
  if (error instanceof Error && /request failed/i.test(error.message)) return 0; // the loader's streamed request
  return undefined;
}

/** Worth another try: a network error, a timeout, too many requests or a server error (5xx). */
export function isRetryableFrameError(error: unknown): boolean {
  const status = frameErrorStatus(error);
  return status !== undefined && (status === 0 || status === 408 || status === 429 || status >= 500);
}

export interface RetryOptions {
  delays?: readonly number[];
  retryable?: (error: unknown) => boolean;
  sleep?: (ms: number) => Promise<void>;
  onRetry?: (attempt: number, error: unknown, delayMs: number) => void;
}

const wait = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** `attempt()` until it succeeds, a failure is not retryable or the delays are used up (then its last error). */
export async function withRetry<T>(attempt: () => Promise<T>, options: RetryOptions = {}): Promise<T> {
  const { delays = FRAME_RETRY_DELAYS_MS, retryable = isRetryableFrameError, sleep = wait, onRetry } = options;
  for (let n = 0; ; n++) {
    try {
      return await attempt();
    } catch (error) {
      if (n >= delays.length || !retryable(error)) throw error;
      onRetry?.(n + 1, error, delays[n]);
      await sleep(delays[n]);
    }
  }
}

/** A frame that could not be loaded after all tries: what the viewer's frame loader rejects with. */
export class FrameLoadError extends Error {
  constructor(readonly imageId: string, readonly status: number | undefined, readonly tries: number, readonly cause?: unknown) {
    super(`frame not loaded after ${tries} ${tries === 1 ? 'try' : 'tries'}${status !== undefined ? ` (HTTP ${status || 'network error'})` : ''}: ${imageId}`);
    this.name = 'FrameLoadError';
  }
}

/** What the viewer knows of a frame: its study and series, and the numbers people read. */
export interface FrameInfo {
  studyUid: string;
  seriesUid: string;
  seriesNumber: number | null;
  instanceNumber: number | null;
  sopUid: string;
}

export interface MissingFrame extends FrameInfo {
  imageId: string;
  status: number | undefined;
  tries: number;
}

type Listener = (missing: readonly MissingFrame[]) => void;

/** The frames that could not be loaded after all tries, by image ID; listeners hear every change. */
export class MissingFrames {
  private frames = new Map<string, MissingFrame>();
  private listeners = new Set<Listener>();

  add(frame: MissingFrame): void {
    this.frames.set(frame.imageId, frame);
    this.emit();
  }

  remove(imageId: string): void {
    if (this.frames.delete(imageId)) this.emit();
  }

  list(studyUid?: string): MissingFrame[] {
    return [...this.frames.values()].filter((f) => studyUid === undefined || f.studyUid === studyUid);
  }

  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(): void {
    const all = [...this.frames.values()];
    for (const listener of this.listeners) listener(all);
  }
}

export interface MissingSeries {
  seriesUid: string;
  label: string;
  instances: number[];
  text: string;
}

/** The missing frames grouped by series: "T1c (series 3): instances 12, 14"; `seriesLabel` names a
 * series (its role), instance numbers sorted (the SOP Instance UID when a frame has none). */
export function describeMissing(frames: readonly MissingFrame[], seriesLabel: (seriesUid: string) => string | undefined): MissingSeries[] {
  const bySeries = new Map<string, MissingFrame[]>();
  for (const f of frames) bySeries.set(f.seriesUid, [...(bySeries.get(f.seriesUid) ?? []), f]);
  return [...bySeries.entries()].map(([seriesUid, list]) => {
    const numbers = list.map((f) => f.instanceNumber).filter((n): n is number => n !== null).sort((a, b) => a - b);
    const unnumbered = list.filter((f) => f.instanceNumber === null).map((f) => f.sopUid);
    const name = seriesLabel(seriesUid) ?? 'Series';
    const seriesNumber = list[0].seriesNumber;
    const label = seriesNumber !== null ? `${name} (series ${seriesNumber})` : name;
    const parts = [...numbers.map(String), ...unnumbered];
    const text = `${label}: ${parts.length === 1 ? 'instance' : 'instances'} ${parts.join(', ')}`;
    return { seriesUid, label, instances: numbers, text };
  });
}
