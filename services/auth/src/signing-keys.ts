import { exportJWK, generateKeyPair, jwtVerify, SignJWT, type JWK, type JWTPayload } from 'jose';
import { ConfigError, errorMessage, UnauthenticatedError, type Logger } from '@aijob/core';
import { hasActiveSigningKey, lockedTransaction, rotateOutSigningKeys, type DbTx, type Store } from '@aijob/store';
import { randomId } from './keys.js';
import type { KeyEncryption } from './key-encryption.js';
import { ALG, SigningKeyRows, type OpenedKey } from './signing-key-rows.js';

interface LoadedKey extends OpenedKey {
  rotatedAt: Date | null;
  retiresAt: Date | null;
}

export interface TokenClaims extends JWTPayload {
  /** Workspace id. */
  ws: string;
  /** Space-separated scopes. */
  scope: string;
}

/**
 * JWT signing keys kept in Postgres, their private halves sealed (signing-key-rows.ts).
 * The newest unrotated key signs; every key not yet retired verifies. Replicas reload
 * the set every `refreshMs` (and at once when told of a rotation), so a rotation or
 * retirement reaches all of them within that time.
 */
export class SigningKeys {
  private keys: LoadedKey[] = [];
  private loadedAt = 0;
  private readonly rows: SigningKeyRows;
  /** Opened keys by kid, kept while their sealed value is unchanged (no re-import every reload). */
  private readonly opened = new Map<string, OpenedKey>();
  private readonly reported = new Set<string>();

  constructor(private readonly store: Store, kek: KeyEncryption, private readonly log: Logger,
    private readonly o: { issuer: string; audience: string; refreshMs?: number }) {
    this.rows = new SigningKeyRows(store, kek);
  }

  /**
   * At start: seals plain-text rows from before sealing, creates the first key when there
   * is none (one replica wins; the rest reload), then loads them. Fails when a key in use
   * does not open: a wrong SIGNING_KEY_ENCRYPTION_KEY, or a row someone else wrote.
   */
  async ensureActive(): Promise<void> {
    const changed = await lockedTransaction(this.store.db, 'signingKeys', async (tx) => {
      const c = await this.rows.sealLegacy(tx);
      if (!(await hasActiveSigningKey(tx))) await this.insertNew(tx);
      return c;
    });
    if (changed.sealed) this.log.warn({ rows: changed.sealed }, 'plain-text signing keys sealed; rotate the signing key if the database may have been read before');
    if (changed.resealed) this.log.info({ rows: changed.resealed }, 'signing keys sealed again with the first key-encryption key');
    const problems = await this.reload(true);
    if (problems.length) throw new ConfigError(problems.map((p) => `signing key ${p}`));
    if (!this.keys.some((k) => k.rotatedAt === null)) throw new ConfigError(['signing keys: none active opened']);
  }

  /** Makes a new key the signer; the previous ones verify until `retireAfterMs` from now. */
  async rotate(retireAfterMs: number, audit?: (tx: DbTx, kid: string) => Promise<void>):
    Promise<{ kid: string; retiring: string[]; retireAt: Date }> {
    const result = await lockedTransaction(this.store.db, 'signingKeys', async (tx) => {
      // The database's clock decides retirement; report its time.
      const { kids, retireAt } = await rotateOutSigningKeys(tx, retireAfterMs);
      const kid = await this.insertNew(tx);
      await audit?.(tx, kid);
      return { kid, retiring: kids, retireAt };
    });
    await this.reload();
    return result;
  }

  async sign(claims: { sub: string; ws: string; scopes: string[] }, ttlSeconds: number): Promise<{ token: string; expiresAt: Date }> {
    await this.fresh();
    const signer = this.keys.find((k) => k.rotatedAt === null);
    if (!signer) throw new Error('no active signing key');
    const now = Math.floor(Date.now() / 1000);
    const exp = now + ttlSeconds;
    const token = await new SignJWT({ ws: claims.ws, scope: claims.scopes.join(' ') })
      .setProtectedHeader({ alg: ALG, kid: signer.kid, typ: 'JWT' })
      .setIssuer(this.o.issuer)
      .setAudience(this.o.audience)
      .setSubject(claims.sub)
      .setIssuedAt(now)
      .setExpirationTime(exp)
      .setJti(randomId(16))
      .sign(signer.signKey);
    return { token, expiresAt: new Date(exp * 1000) };
  }

  /** Verifies signature (ES256 only: no `none`, no HMAC), kid, iss, aud and exp. */
  async verify(token: string): Promise<TokenClaims> {
    await this.fresh();
    try {
      const { payload } = await jwtVerify<TokenClaims>(token, async (header) => {
        const key = await this.keyFor(header.kid);
        if (!key) throw new UnauthenticatedError('token signed by an unknown or retired key');
        return key.verifyKey;
      }, { issuer: this.o.issuer, audience: this.o.audience, algorithms: [ALG], requiredClaims: ['exp', 'sub'] });
      if (typeof payload.ws !== 'string' || typeof payload.scope !== 'string') {
        throw new UnauthenticatedError('token lacks workspace or scope claims');
      }
      return payload;
    } catch (err) {
      if (err instanceof UnauthenticatedError) throw err;
      throw new UnauthenticatedError(`invalid token: ${(err as { code?: string }).code ?? 'verification failed'}`);
    }
  }

  /** The public keys that verify tokens now, as a JWKS document. */
  async jwks(): Promise<{ keys: JWK[] }> {
    await this.fresh();
    return { keys: this.usable().map((k) => ({ ...k.publicJwk, kid: k.kid, alg: ALG, use: 'sig' })) };
  }

  private usable(): LoadedKey[] {
    const now = Date.now();
    return this.keys.filter((k) => k.retiresAt === null || k.retiresAt.getTime() > now);
  }

  private async keyFor(kid: string | undefined): Promise<LoadedKey | undefined> {
    if (!kid) return undefined;
    let key = this.usable().find((k) => k.kid === kid);
    if (!key && Date.now() - this.loadedAt > 250) {
      await this.reload();
      key = this.usable().find((k) => k.kid === kid);
    }
    return key;
  }

  private async fresh(): Promise<void> {
    if (Date.now() - this.loadedAt > (this.o.refreshMs ?? 2_000)) await this.reload();
  }

  /**
   * Reloads the unretired keys. A row that does not open is left out (and reported once),
   * unless this replica opened it before and only its sealing changed (another replica
   * sealed it again with a key-encryption key this one does not hold yet). Returns the
   * problems, for the start-up check.
   */
  reload(strict = false): Promise<string[]> {
    this.reloading ??= this.load(strict).finally(() => { this.reloading = undefined; });
    return this.reloading;
  }

  private reloading: Promise<string[]> | undefined;

  private async load(strict: boolean): Promise<string[]> {
    const problems: string[] = [];
    const keys: LoadedKey[] = [];
    const rows = await this.rows.unretired();
    for (const kid of this.opened.keys()) if (!rows.some((r) => r.kid === kid)) this.opened.delete(kid);
    for (const r of rows) {
      let key = this.opened.get(r.kid);
      if (!key || key.sealed !== r.privateKeySealed) {
        try {
          key = await this.rows.open(r);
          this.opened.set(r.kid, key);
        } catch (err) {
          if (!key) {
            problems.push(`${r.kid}: ${errorMessage(err)}`);
            if (!strict && !this.reported.has(r.kid)) {
              this.reported.add(r.kid);
              this.log.error({ kid: r.kid, err: errorMessage(err) }, 'signing key does not open: not used');
            }
            continue;
          }
        }
      }
      keys.push({ ...key, rotatedAt: r.rotatedAt, retiresAt: r.retiresAt });
    }
    this.keys = keys;
    this.loadedAt = Date.now();
    return problems;
  }

  private async insertNew(tx: DbTx): Promise<string> {
    const { publicKey, privateKey } = await generateKeyPair(ALG, { extractable: true });
    const kid = `sk_${randomId(16)}`;
    await this.rows.insert(tx, kid, await exportJWK(publicKey), await exportJWK(privateKey));
    return kid;
  }
}
