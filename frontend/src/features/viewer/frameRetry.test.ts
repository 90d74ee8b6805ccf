import { describe, expect, it, vi } from 'vitest';
import { FRAME_RETRY_DELAYS_MS, FrameLoadError, MissingFrames, describeMissing, isRetryableFrameError, withRetry } from './frameRetry';

const xhr = (status: number) => ({ status, response: null });

describe('retrying frame requests', () => {
  it('retries server and network errors, not client errors or decoding errors', () => {
    expect(isRetryableFrameError(xhr(503))).toBe(true);
    expect(isRetryableFrameError(xhr(500))).toBe(true);
    expect(isRetryableFrameError(xhr(0))).toBe(true); // network
    expect(isRetryableFrameError(xhr(429))).toBe(true);
    expect(isRetryableFrameError(new TypeError('Failed to fetch'))).toBe(true);
    expect(isRetryableFrameError(xhr(404))).toBe(false);
    expect(isRetryableFrameError(xhr(401))).toBe(false);
    expect(isRetryableFrameError(new Error("Couldn't decode"))).toBe(false);
  });

  it('waits 250, 500 and 1000 ms between four tries, then gives the last error', async () => {
    const sleep = vi.fn(async () => {});
    const onRetry = vi.fn();
    const attempt = vi.fn(async () => Promise.reject(xhr(503)));
    await expect(withRetry(attempt, { sleep, onRetry })).rejects.toEqual(xhr(503));
    expect(attempt).toHaveBeenCalledTimes(4);
    expect(sleep.mock.calls.map((c) => (c as unknown[])[0])).toEqual([250, 500, 1000]);
    expect(FRAME_RETRY_DELAYS_MS).toEqual([250, 500, 1000]);
    expect(onRetry.mock.calls.map((c) => c[0])).toEqual([1, 2, 3]);
  });

  it('recovers when a later try succeeds', async () => {
    const sleep = vi.fn(async () => {});
    let n = 0;
    const value = await withRetry(async () => (++n < 3 ? Promise.reject(xhr(503)) : 'image'), { sleep });
    expect(value).toBe('image');
    expect(n).toBe(3);
    expect(sleep).toHaveBeenCalledTimes(2);
  });

  it('does not retry what cannot get better', async () => {
    const sleep = vi.fn(async () => {});
    const attempt = vi.fn(async () => Promise.reject(xhr(404)));
    await expect(withRetry(attempt, { sleep })).rejects.toEqual(xhr(404));
    expect(attempt).toHaveBeenCalledTimes(1);
    expect(sleep).not.toHaveBeenCalled();
  });

  it('really waits with the default sleep', async () => {
    vi.useFakeTimers();
    try {
      let n = 0;
      const done = withRetry(async () => (++n < 2 ? Promise.reject(xhr(502)) : 'ok'));
      await vi.advanceTimersByTimeAsync(249);
      expect(n).toBe(1);
      await vi.advanceTimersByTimeAsync(1);
      await expect(done).resolves.toBe('ok');
    } finally {
      vi.useRealTimers();
    }
  });
});

describe('missing frames', () => {
  it('says why a frame is missing', () => {
    const e = new FrameLoadError('wadors:x', 503, 4);
    expect(e).toBeInstanceOf(Error);
    expect(e.message).toBe('frame not loaded after 4 tries (HTTP 503): wadors:x');
    expect(new FrameLoadError('wadors:y', 0, 1).message).toBe('frame not loaded after 1 try (HTTP network error): wadors:y');
  });

  const frame = (series: string, instance: number | null, sop = `sop${instance}`) => ({
    imageId: `wadors:/${series}/${sop}`, studyUid: 'st', seriesUid: series, seriesNumber: series === 's1' ? 3 : null,
    instanceNumber: instance, sopUid: sop, status: 503, tries: 4,
  });

  it('lists them per study and tells listeners', () => {
    const store = new MissingFrames();
    const heard: number[] = [];
    const stop = store.subscribe((all) => heard.push(all.length));
    store.add(frame('s1', 14));
    store.add({ ...frame('s1', 2), studyUid: 'other' });
    expect(store.list('st').length).toBe(1);
    store.remove(frame('s1', 14).imageId);
    stop();
    store.add(frame('s1', 15));
    expect(heard).toEqual([1, 2, 1]);
  });

  it('names each series and its instance numbers in order', () => {
    const described = describeMissing([frame('s1', 14), frame('s1', 12), frame('s2', null, '1.2.3')], (uid) => (uid === 's1' ? 'T1c' : undefined));
    expect(described.map((d) => d.text)).toEqual(['T1c (series 3): instances 12, 14', 'Series: instance 1.2.3']);
    expect(described[0].instances).toEqual([12, 14]);
  });
});
