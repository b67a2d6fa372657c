import type { Principal, WorkspacePolicy } from '@aijob/contracts';
import { UnauthenticatedError, type Logger } from '@aijob/core';
import { credentialByHash, credentialById, touchApiKey, type Credential, type Store } from '@aijob/store';
import { hashApiKey, looksLikeJwt } from './keys.js';
import type { SigningKeys } from './signing-keys.js';

/** A credential's principal and its workspace's policy. */
export interface Identity {
  principal: Principal;
  policy: WorkspacePolicy;
}

function policyOf(r: Credential): WorkspacePolicy {
  return {
    rateLimitPerMinute: r.rateLimitPerMinute, maxPending: r.maxPending,
    allowedJobTypes: r.allowedJobTypes ?? [], monthlyBudgetUsd: r.monthlyBudgetUsd ?? 0,
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
    const row = await credentialByHash(this.store.db, hashApiKey(key));
    this.assertUsable(row);
    this.touch(row.id);
    return { principal: { workspaceId: row.workspaceId, subject: row.id, scopes: row.scopes }, policy: policyOf(row) };
  }

  private keyById(id: string): Promise<Credential | undefined> {
    return credentialById(this.store.db, id);
  }

  private assertUsable(row: Credential | undefined): asserts row is Credential {
    if (!row) throw new UnauthenticatedError('invalid API key');
    if (row.revokedAt) throw new UnauthenticatedError('API key revoked');
    if (row.expiresAt && row.expiresAt.getTime() <= Date.now()) throw new UnauthenticatedError('API key expired');
  }

  /** Records last use at most once a minute per key, off the request path. */
  private touch(id: string): void {
    const now = Date.now();
    if (now - (this.lastUsedWritten.get(id) ?? 0) < 60_000) return;
    this.lastUsedWritten.set(id, now);
    touchApiKey(this.store.db, id).catch((err: unknown) =>
      this.log.warn({ err, key_id: id }, 'could not record key use'));
  }
}
