import * as grpc from '@grpc/grpc-js';
import type { AuthServiceClient } from '@aijob/contracts';
import { toApiError } from './errors.js';

/**
 * The credential calls carry: a given JWT, the API key itself, or (with an auth client
 * and `exchange`) short-lived JWTs from IssueToken, refreshed when 80% of their lifetime
 * has passed and fetched again when the server refuses one.
 */
export class Credentials {
  private token: { value: string; refreshAt: number } | undefined;
  private pending: Promise<string> | undefined;

  constructor(private readonly o: { apiKey?: string; token?: string; auth?: AuthServiceClient; exchange: boolean }) {
    if (!o.apiKey && !o.token) throw new Error('AijobClient needs apiKey or token');
  }

  /** Whether API keys are exchanged for JWTs. */
  get exchanging(): boolean {
    return !this.o.token && !!this.o.auth && !!this.o.apiKey && this.o.exchange;
  }

  async current(): Promise<string> {
    if (this.o.token) return this.o.token;
    if (!this.exchanging) return this.o.apiKey!;
    if (this.token && Date.now() < this.token.refreshAt) return this.token.value;
    this.pending ??= new Promise<string>((resolve, reject) => {
      this.o.auth!.issueToken({ apiKey: this.o.apiKey! }, new grpc.Metadata(), { deadline: Date.now() + 10_000 }, (err, res) => {
        this.pending = undefined;
        if (err) return reject(toApiError(err));
        const now = Date.now();
        const expires = res.expiresAt?.getTime() ?? now + 60_000;
        this.token = { value: res.token, refreshAt: now + (expires - now) * 0.8 };
        resolve(res.token);
      });
    });
    return this.pending;
  }

  /**
   * Forgets `refused` if it is the exchanged JWT in use (revoked signing key, clock skew,
   * a restarted auth service); true when the next `current()` fetches a new one.
   */
  invalidate(refused: string): boolean {
    if (!this.exchanging) return false;
    if (this.token?.value === refused) this.token = undefined;
    return refused !== this.o.apiKey;
  }
}
