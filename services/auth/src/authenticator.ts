import type { Principal, WorkspacePolicy } from '@aijob/contracts';
import { UnauthenticatedError, type Logger } from '@aijob/core';
import type { Store } from '@aijob/store';
import { hashApiKey, looksLikeJwt } from './keys.js';
import type { SigningKeys } from './signing-keys.js';

interface KeyRow {
  id: string;
  workspace_id: string;
  scopes: string[];
  revoked_at: Date | null;
  expires_at: Date | null;
  rate_limit_per_minute: number;
  max_pending: number;
  allowed_job_types: string[] | null;
  monthly_budget_usd: number | null;
}

/** A credential's principal and its workspace's policy. */
export interface Identity {
  principal: Principal;
  policy: WorkspacePolicy;
}

const keyQuery = `SELECT k.id, k.workspace_id, k.scopes, k.revoked_at, k.expires_at, w.rate_limit_per_minute,
  w.max_pending, w.allowed_job_types, w.monthly_budget_usd
  FROM api_keys k JOIN workspaces w ON w.id = k.workspace_id`;

function policyOf(r: KeyRow): WorkspacePolicy {
  return {
    rateLimitPerMinute: r.rate_limit_per_minute, maxPending: r.max_pending,
    allowedJobTypes: r.allowed_job_types ?? [], monthlyBudgetUsd: r.monthly_budget_usd ?? 0,
  };
}

/**
 * Resolves API keys and JWTs to principals. Nothing is cached here: the callers'
 * short caches are what keeps revocation within its 5-second promise.
 */
export class Authenticator {
  private readonly lastUsedWritten = new Map<string, number>();

  constructor(private readonly store: Store, private readonly keys: SigningKeys, private readonly log: Logger) {}

  async authenticate(credential: string): Promise<Identity> {
    if (looksLikeJwt(credential)) {
      const claims = await this.keys.verify(credential);
      // A token dies with the key it was issued for.
      const key = await this.keyById(claims.sub!);
      this.assertUsable(key);
      return {
        principal: { workspaceId: claims.ws, subject: claims.sub!, scopes: claims.scope.split(' ').filter(Boolean) },
        policy: policyOf(key),
      };
    }
    return this.authenticateApiKey(credential);
  }

  /** API keys only (IssueToken does not take a token to mint another). */
  async authenticateApiKey(key: string): Promise<Identity> {
    if (key.length < 20 || key.length > 512) throw new UnauthenticatedError('invalid API key');
    const [row] = await this.store.sql.unsafe<KeyRow[]>(`${keyQuery} WHERE k.secret_hash = $1`, [hashApiKey(key)]);
    this.assertUsable(row);
    this.touch(row.id);
    return { principal: { workspaceId: row.workspace_id, subject: row.id, scopes: row.scopes }, policy: policyOf(row) };
  }

  private async keyById(id: string): Promise<KeyRow | undefined> {
    const [row] = await this.store.sql.unsafe<KeyRow[]>(`${keyQuery} WHERE k.id = $1`, [id]);
    return row;
  }

  private assertUsable(row: KeyRow | undefined): asserts row is KeyRow {
    if (!row) throw new UnauthenticatedError('invalid API key');
    if (row.revoked_at) throw new UnauthenticatedError('API key revoked');
    if (row.expires_at && row.expires_at.getTime() <= Date.now()) throw new UnauthenticatedError('API key expired');
  }

  /** Records last use at most once a minute per key, off the request path. */
  private touch(id: string): void {
    const now = Date.now();
    if (now - (this.lastUsedWritten.get(id) ?? 0) < 60_000) return;
    this.lastUsedWritten.set(id, now);
    this.store.sql`UPDATE api_keys SET last_used_at = now() WHERE id = ${id}`.catch((err: unknown) =>
      this.log.warn({ err, key_id: id }, 'could not record key use'));
  }
}
