import { exportJWK, generateKeyPair, importJWK, jwtVerify, SignJWT, type JWK, type JWTPayload } from 'jose';
import { desc, isNull, or, gt, sql } from 'drizzle-orm';
import { UnauthenticatedError } from '@aijob/platform';
import { signingKeys, type Store, type Tx } from '@aijob/store';
import { randomId } from './keys.js';

const ALG = 'ES256';

interface LoadedKey {
  kid: string;
  publicJwk: JWK;
  privateJwk: JWK;
  createdAt: Date;
  rotatedAt: Date | null;
  retiresAt: Date | null;
  verifyKey: Awaited<ReturnType<typeof importJWK>>;
}

export interface TokenClaims extends JWTPayload {
  /** Workspace id. */
  ws: string;
  /** Space-separated scopes. */
  scope: string;
}

/**
 * JWT signing keys kept in Postgres. The newest unrotated key signs; every key not yet
 * retired verifies. Replicas reload the set every `refreshMs`, so a rotation or
 * retirement reaches all of them within that time.
 */
export class SigningKeys {
  private keys: LoadedKey[] = [];
  private loadedAt = 0;

  constructor(private readonly store: Store, private readonly o: { issuer: string; audience: string; refreshMs?: number }) {}

  /** Creates the first key when there is none (one replica wins; the rest reload). */
  async ensureActive(): Promise<void> {
    await this.store.sql.begin(async (tx) => {
      await tx`SELECT pg_advisory_xact_lock(712002)`;
      const [row] = await tx`SELECT kid FROM signing_keys WHERE rotated_at IS NULL AND (retires_at IS NULL OR retires_at > now()) LIMIT 1`;
      if (!row) await this.insertNew(tx);
    });
    await this.reload();
  }

  /** Makes a new key the signer; the previous ones verify until `retireAfterMs` from now. */
  async rotate(retireAfterMs: number): Promise<{ kid: string; retiring: string[] }> {
    const result = await this.store.sql.begin(async (tx) => {
      await tx`SELECT pg_advisory_xact_lock(712002)`;
      const retiring = await tx<{ kid: string }[]>`
        UPDATE signing_keys SET rotated_at = now(),
          retires_at = LEAST(COALESCE(retires_at, 'infinity'), now() + ${retireAfterMs} * interval '1 millisecond')
        WHERE rotated_at IS NULL RETURNING kid`;
      const kid = await this.insertNew(tx);
      return { kid, retiring: retiring.map((r) => r.kid) };
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
    const privateKey = await importJWK(signer.privateJwk, ALG);
    const token = await new SignJWT({ ws: claims.ws, scope: claims.scopes.join(' ') })
      .setProtectedHeader({ alg: ALG, kid: signer.kid, typ: 'JWT' })
      .setIssuer(this.o.issuer)
      .setAudience(this.o.audience)
      .setSubject(claims.sub)
      .setIssuedAt(now)
      .setExpirationTime(exp)
      .setJti(randomId(16))
      .sign(privateKey);
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

  private async reload(): Promise<void> {
    const rows = await this.store.db.select().from(signingKeys)
      .where(or(isNull(signingKeys.retiresAt), gt(signingKeys.retiresAt, sql`now()`)))
      .orderBy(desc(signingKeys.createdAt));
    this.keys = await Promise.all(rows.map(async (r) => ({
      kid: r.kid,
      publicJwk: r.publicJwk as JWK,
      privateJwk: r.privateJwk as JWK,
      createdAt: r.createdAt,
      rotatedAt: r.rotatedAt,
      retiresAt: r.retiresAt,
      verifyKey: await importJWK(r.publicJwk as JWK, ALG),
    })));
    this.loadedAt = Date.now();
  }

  private async insertNew(tx: Tx): Promise<string> {
    const { publicKey, privateKey } = await generateKeyPair(ALG, { extractable: true });
    const kid = `sk_${randomId(16)}`;
    await tx`INSERT INTO signing_keys (kid, algorithm, public_jwk, private_jwk)
      VALUES (${kid}, ${ALG}, ${JSON.stringify(await exportJWK(publicKey))}::text::jsonb,
        ${JSON.stringify(await exportJWK(privateKey))}::text::jsonb)`;
    return kid;
  }
}

