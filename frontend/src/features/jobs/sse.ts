// Server-Sent Events over fetch (EventSource cannot send the Authorization header).
import type { Api, Job } from '../api/client';
import { JOB_STAGES, stageName } from './stages';

export interface SseEvent {
  event: string;
  data: string;
}

/** Incremental SSE parser: feed it text chunks, it returns the complete events seen so far. */
export class SseParser {
  private buffer = '';

  push(chunk: string): SseEvent[] {
    this.buffer += chunk.replace(/\r\n?/g, '\n');
    const events: SseEvent[] = [];
    let boundary: number;
    while ((boundary = this.buffer.indexOf('\n\n')) >= 0) {
      const block = this.buffer.slice(0, boundary);
      this.buffer = this.buffer.slice(boundary + 2);
      let event = 'message';
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (!line || line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? '' : line.slice(colon + 1);
        if (value.startsWith(' ')) value = value.slice(1);
        if (field === 'event') event = value;
        else if (field === 'data') data.push(value);
      }
      if (data.length) events.push({ event, data: data.join('\n') });
    }
    return events;
  }
}

export const TERMINAL = new Set(['succeeded', 'failed']);

/** The stages of a segmentation job, in order (the worker's `stage` names): see stages.ts. */
export const STAGES: readonly string[] = JOB_STAGES;

export function stageLabel(job: Pick<Job, 'state' | 'stage' | 'progress'>): string {
  if (job.state === 'succeeded') return 'Done';
  if (job.state === 'failed') return 'Failed';
  if (job.state === 'queued') return job.stage === 'waiting-retry' ? 'Waiting to retry' : 'Waiting in the queue';
  const pct = Math.round(Math.max(0, Math.min(1, job.progress)) * 100);
  return `${job.stage ? stageName(job.stage) : 'running'} · ${pct}%`;
}

/**
 * Follow a job until it ends: the SSE stream (fetch with the bearer token), falling back to polling
 * `GET /api/jobs/{id}` every second when the stream breaks. Returns the final job.
 */
export async function followJob(api: Api, id: string, onJob: (job: Job) => void, signal?: AbortSignal): Promise<Job> {
  let last: Job | null = null;
  try {
    const response = await api.request(`/api/jobs/${encodeURIComponent(id)}/events`, {
      headers: { accept: 'text/event-stream' },
      signal,
    });
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
    const parser = new SseParser();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      for (const event of parser.push(value)) {
        if (event.event !== 'progress') continue;
        last = JSON.parse(event.data) as Job;
        onJob(last);
        if (TERMINAL.has(last.state)) return last;
      }
    }
  } catch (error) {
    if (signal?.aborted) throw error;
    if ((error as Error).name === 'SessionExpired') throw error;
  }
  for (;;) {
    if (signal?.aborted) throw new DOMException('aborted', 'AbortError');
    last = await api.job(id);
    onJob(last);
    if (TERMINAL.has(last.state)) return last;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}
