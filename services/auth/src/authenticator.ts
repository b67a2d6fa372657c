import type { Principal } from '@aijob/contracts';
import { UnauthenticatedError, type Logger } from '@aijob/platform';
import type { Store } from '@aijob/store';
import { hashApiKey, looksLikeJwt } from './keys.js';
import type { SigningKeys } from './signing-keys.js';

interface KeyRow {
  id: string;
  workspace_id: string;
  scopes: string[];
  revoked_at: Date | null;
  expires_at: Date | null;
}

/**
 * Resolves API keys and JWTs to principals. Nothing is cached here: the callers'
 * short caches are what keeps revocation within its 5-second promise.
 */
export class Authenticator {
  private readonly lastUsedWritten = new Map<string, number>();

  constructor(private readonly store: Store, private readonly keys: SigningKeys, private readonly log: Logger) {}

  async authenticate(credential: string): Promise<Principal> {
    if (looksLikeJwt(credential)) {
      const claims = await this.keys.verify(credential);
      // A token dies with the key it was issued for.
      const key = await this.keyById(claims.sub!);
      this.assertUsable(key);
      return { workspaceId: claims.ws, subject: claims.sub!, scopes: claims.scope.split(' ').filter(Boolean) };
    }
    return this.authenticateApiKey(credential);
  }

  /** API keys only (IssueToken does not take a token to mint another). */
  async authenticateApiKey(key: string): Promise<Principal> {
    if (key.length < 20 || key.length > 512) throw new UnauthenticatedError('invalid API key');
    const [row] = await this.store.sql<KeyRow[]>`
      SELECT id, workspace_id, scopes, revoked_at, expires_at FROM api_keys WHERE secret_hash = ${hashApiKey(key)}`;
    this.assertUsable(row);
    this.touch(row!.id);
    return { workspaceId: row!.workspace_id, subject: row!.id, scopes: row!.scopes };
  }

  private async keyById(id: string): Promise<KeyRow | undefined> {
    const [row] = await this.store.sql<KeyRow[]>`
      SELECT id, workspace_id, scopes, revoked_at, expires_at FROM api_keys WHERE id = ${id}`;
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
