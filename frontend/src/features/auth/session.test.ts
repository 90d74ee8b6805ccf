import { describe, expect, it, vi } from 'vitest';
import { Api } from '../api/client';
import { Session, SessionExpired, memoryStore } from './session';

const json = (status: number, body: unknown) => new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });
const pair = (n: number) => ({ access_token: `a${n}`, refresh_token: `r${n}`, expires_in: 900 });

describe('Session', () => {
  it('signs in with the OAuth2 password form', async () => {
    const fetchFn = vi.fn(async () => json(200, pair(1)));
    const session = new Session(memoryStore(), fetchFn as unknown as typeof fetch, () => 0);
    await session.signIn('ana', 'secret-password');
    const [url, init] = fetchFn.mock.calls[0] as unknown as [string, RequestInit];
    expect(url).toBe('/api/auth/token');
    expect(String(init.body)).toBe('username=ana&password=secret-password');
    expect(await session.accessToken()).toBe('a1');
  });

  it('refreshes a token about to expire, once for concurrent callers', async () => {
    const fetchFn = vi.fn(async () => json(200, pair(2)));
    const store = memoryStore({ accessToken: 'a1', refreshToken: 'r1', expiresAt: 10_000 });
    const session = new Session(store, fetchFn as unknown as typeof fetch, () => 9_990);
    const tokens = await Promise.all([session.accessToken(), session.accessToken()]);
    expect(tokens).toEqual(['a2', 'a2']);
    expect(fetchFn).toHaveBeenCalledTimes(1);
    expect(JSON.parse(String((fetchFn.mock.calls[0] as unknown as [string, RequestInit])[1].body))).toEqual({ refresh_token: 'r1' });
    expect(store.get()!.refreshToken).toBe('r2');
  });

  it('ends the session with a message when the refresh token is refused', async () => {
    const session = new Session(
      memoryStore({ accessToken: 'a1', refreshToken: 'r1', expiresAt: 0 }),
      (async () => json(401, { error: 'unauthorized', detail: 'token expired' })) as unknown as typeof fetch,
      () => 1_000,
    );
    const ended: Array<string | null> = [];
    session.onEnd((reason) => ended.push(reason));
    await expect(session.accessToken()).rejects.toBeInstanceOf(SessionExpired);
    expect(session.signedIn).toBe(false);
    expect(ended[0]).toMatch(/expired/);
  });

  it('reports a wrong password plainly', async () => {
    const session = new Session(memoryStore(), (async () => json(401, { detail: 'invalid credentials' })) as unknown as typeof fetch);
    await expect(session.signIn('a', 'b')).rejects.toThrow('Wrong username or password.');
  });
});

describe('Api', () => {
  it('retries once with a fresh token after a 401', async () => {
    const calls: string[] = [];
    const fetchFn = vi.fn(async (url: string, init?: RequestInit) => {
      const auth = new Headers(init?.headers).get('authorization');
      calls.push(`${url} ${auth ?? ''}`);
      if (url === '/api/auth/refresh') return json(200, pair(2));
      return auth === 'Bearer a2' ? json(200, [{ study_instance_uid: '1.2' }]) : json(401, { detail: 'token expired' });
    });
    const session = new Session(memoryStore({ accessToken: 'a1', refreshToken: 'r1', expiresAt: 1e15 }), fetchFn as unknown as typeof fetch);
    const api = new Api(session, fetchFn as unknown as typeof fetch);
    const studies = await api.studies({ search: 'doe', status: 'ready' });
    expect(studies).toHaveLength(1);
    expect(calls).toEqual(['/api/studies?search=doe&status=ready Bearer a1', '/api/auth/refresh ', '/api/studies?search=doe&status=ready Bearer a2']);
  });

  it('turns error bodies into ApiError with the detail', async () => {
    const fetchFn = async () => json(404, { error: 'not_found', detail: 'no finished segmentation for this study (latest job: running)' });
    const session = new Session(memoryStore({ accessToken: 'a', refreshToken: 'r', expiresAt: 1e15 }), fetchFn as unknown as typeof fetch);
    await expect(new Api(session, fetchFn as unknown as typeof fetch).measurements('1.2')).rejects.toMatchObject({
      status: 404,
      message: 'no finished segmentation for this study (latest job: running)',
    });
  });
});
