// The signed-in session: the gateway's access and refresh tokens, kept in sessionStorage (one tab,
// gone when the tab closes). Refresh tokens are single-use (rotated): concurrent refreshes share one
// request, or the second would present a spent token and revoke the whole session.

export interface Tokens {
  accessToken: string;
  refreshToken: string;
  expiresAt: number; // ms since the epoch
}

export interface TokenStore {
  get(): Tokens | null;
  set(tokens: Tokens | null): void;
}

const KEY = 'glioscope.session';

export function browserStore(storage: Storage = sessionStorage): TokenStore {
  return {
    get() {
      const raw = storage.getItem(KEY);
      if (!raw) return null;
      try {
        return JSON.parse(raw) as Tokens;
      } catch {
        return null;
      }
    },
    set(tokens) {
      if (tokens) storage.setItem(KEY, JSON.stringify(tokens));
      else storage.removeItem(KEY);
    },
  };
}

export function memoryStore(initial: Tokens | null = null): TokenStore {
  let value = initial;
  return { get: () => value, set: (t) => void (value = t) };
}

export class SessionExpired extends Error {
  constructor(message = 'Your session has expired. Please sign in again.') {
    super(message);
    this.name = 'SessionExpired';
  }
}

interface TokenResponse {
  access_token: string;
  refresh_token: string;
  expires_in: number;
}

export function tokensFrom(body: TokenResponse, now: number): Tokens {
  return { accessToken: body.access_token, refreshToken: body.refresh_token, expiresAt: now + body.expires_in * 1000 };
}

/** Seconds before expiry at which a token is refreshed ahead of use. */
export const REFRESH_MARGIN_MS = 30_000;

export class Session {
  private refreshing: Promise<Tokens> | null = null;
  private listeners = new Set<(reason: string | null) => void>();

  constructor(
    readonly store: TokenStore,
    private readonly fetchFn: typeof fetch = (...a) => fetch(...a),
    private readonly now: () => number = () => Date.now(),
  ) {}

  get signedIn(): boolean {
    return this.store.get() !== null;
  }

  /** Called with a message when the session ends by expiry (null on a deliberate sign-out). */
  onEnd(listener: (reason: string | null) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async signIn(username: string, password: string): Promise<void> {
    const body = new URLSearchParams({ username, password });
    const response = await this.fetchFn('/api/auth/token', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body,
    });
    if (!response.ok) {
      const detail = await errorDetail(response);
      if (response.status === 429) throw new Error(`Too many sign-in attempts: ${detail}`);
      throw new Error(response.status === 401 ? 'Wrong username or password.' : detail);
    }
    this.store.set(tokensFrom((await response.json()) as TokenResponse, this.now()));
  }

  signOut(reason: string | null = null): void {
    this.store.set(null);
    this.refreshing = null;
    for (const listener of this.listeners) listener(reason);
  }

  /** A valid access token, refreshed first when it is (nearly) expired. */
  async accessToken(): Promise<string> {
    const tokens = this.store.get();
    if (!tokens) throw new SessionExpired('Please sign in.');
    if (tokens.expiresAt - REFRESH_MARGIN_MS > this.now()) return tokens.accessToken;
    return (await this.refresh()).accessToken;
  }

  /** Rotate the tokens (one request at a time); an invalid refresh token ends the session. */
  refresh(): Promise<Tokens> {
    if (!this.refreshing) {
      this.refreshing = this.doRefresh().finally(() => {
        this.refreshing = null;
      });
    }
    return this.refreshing;
  }

  private async doRefresh(): Promise<Tokens> {
    const tokens = this.store.get();
    if (!tokens) throw new SessionExpired('Please sign in.');
    let response: Response;
    try {
      response = await this.fetchFn('/api/auth/refresh', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ refresh_token: tokens.refreshToken }),
      });
    } catch (error) {
      throw new Error(`The server is unreachable: ${String(error)}`);
    }
    if (response.status === 401 || response.status === 403) {
      const error = new SessionExpired();
      this.signOut(error.message);
      throw error;
    }
    if (!response.ok) throw new Error(await errorDetail(response));
    const fresh = tokensFrom((await response.json()) as TokenResponse, this.now());
    this.store.set(fresh);
    return fresh;
  }
}

export async function errorDetail(response: Response): Promise<string> {
  try {
    const body = (await response.json()) as { detail?: unknown; error?: string };
    if (typeof body.detail === 'string') return body.detail;
    if (body.detail) return JSON.stringify(body.detail);
    return body.error ?? `HTTP ${response.status}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}
