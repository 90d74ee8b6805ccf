import { describe, expect, it } from 'vitest';
import { retryAfterSeconds, uploadStudyWhenAdmitted, type UploadAnswer } from './uploadXhr';

describe('uploads admitted by the gateway', () => {
  it('reads Retry-After as whole seconds, at least one', () => {
    expect(retryAfterSeconds('5')).toBe(5);
    expect(retryAfterSeconds(' 0 ')).toBe(1);
    expect(retryAfterSeconds(null)).toBeNull();
    expect(retryAfterSeconds('Wed, 21 Oct 2026 07:28:00 GMT')).toBeNull();
  });

  it('sends again after the wait while the gateway answers 503, then returns its answer', async () => {
    const answers: UploadAnswer[] = [
      { status: 503, body: { detail: 'busy' }, retryAfterS: 5 },
      { status: 503, body: { detail: 'busy' }, retryAfterS: 2 },
      { status: 201, body: { created: true }, retryAfterS: null },
    ];
    const waits: number[] = [];
    const slept: number[] = [];
    let sent = 0;
    const answer = await uploadStudyWhenAdmitted(
      async () => answers[sent++],
      (s) => waits.push(s),
      async (ms) => {
        slept.push(ms);
      },
    );
    expect(answer.status).toBe(201);
    expect(sent).toBe(3);
    expect(waits).toEqual([5, 2]);
    expect(slept).toEqual([5000, 2000]);
  });

  it('gives up after the last attempt and returns other refusals at once', async () => {
    let sent = 0;
    const busy = await uploadStudyWhenAdmitted(
      async () => {
        sent++;
        return { status: 503, body: {}, retryAfterS: 1 };
      },
      () => {},
      async () => {},
      3,
    );
    expect(busy.status).toBe(503);
    expect(sent).toBe(3);
    sent = 0;
    const refused = await uploadStudyWhenAdmitted(
      async () => {
        sent++;
        return { status: 413, body: { detail: 'too large' }, retryAfterS: null };
      },
      () => {},
      async () => {},
    );
    expect(refused.status).toBe(413);
    expect(sent).toBe(1);
  });
});
