import { importJWK, type JWK } from 'jose';
import type { Store, Tx } from '@aijob/store';
import { SealError, type KeyEncryption } from './key-encryption.js';

export const ALG = 'ES256';

/** A row of signing_keys as stored. */
export interface SigningKeyRow {
  kid: string;
  algorithm: string;
  public_jwk: JWK;
  private_jwk: JWK | null;
  private_key_sealed: string | null;
  created_at: Date;
  rotated_at: Date | null;
  retires_at: Date | null;
}

/** A signing key whose sealed private half opened: it may sign and verify. */
export interface OpenedKey {
  kid: string;
  publicJwk: JWK;
  /** The sealed value it was opened from (a changed one is opened again). */
  sealed: string;
  signKey: Awaited<ReturnType<typeof importJWK>>;
  verifyKey: Awaited<ReturnType<typeof importJWK>>;
}

const columns = 'kid, algorithm, public_jwk, private_jwk, private_key_sealed, created_at, rotated_at, retires_at';

/** JSON with sorted keys: jsonb does not keep the order a JWK was written in. */
function canonical(jwk: JWK): string {
  return JSON.stringify(Object.fromEntries(Object.entries(jwk).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))));
}

/** What a sealed private key is bound to: its row's kid, algorithm and public key. */
export const boundTo = (kid: string, alg: string, publicJwk: JWK) => `aijob-signing-key\n${kid}\n${alg}\n${canonical(publicJwk)}`;

/**
 * The signing_keys table, private keys sealed with the auth service's key-encryption
 * key. A row opens only if its sealed key authenticates for that very row and matches
 * its public key: rows written by anyone without the key-encryption key are never used.
 */
export class SigningKeyRows {
  constructor(private readonly store: Store, private readonly kek: KeyEncryption) {}

  /** Rows not yet retired, newest first. */
  async unretired(): Promise<SigningKeyRow[]> {
    return this.store.sql.unsafe<SigningKeyRow[]>(
      `SELECT ${columns} FROM signing_keys WHERE retires_at IS NULL OR retires_at > now() ORDER BY created_at DESC, kid`);
  }

  async insert(tx: Tx, kid: string, publicJwk: JWK, privateJwk: JWK): Promise<void> {
    const sealed = this.kek.seal(JSON.stringify(privateJwk), boundTo(kid, ALG, publicJwk));
    await tx`INSERT INTO signing_keys (kid, algorithm, public_jwk, private_key_sealed)
      VALUES (${kid}, ${ALG}, ${JSON.stringify(publicJwk)}::text::jsonb, ${sealed})`;
  }

  /**
   * Seals the plain-text private keys of rows from before sealing, and seals again with
   * the first key-encryption key what an older one sealed. Run at start, under the
   * caller's lock; returns how many rows changed.
   */
  async sealLegacy(tx: Tx): Promise<{ sealed: number; resealed: number }> {
    const rows = await tx.unsafe<SigningKeyRow[]>(
      `SELECT ${columns} FROM signing_keys WHERE private_jwk IS NOT NULL OR private_key_sealed IS NULL
         OR split_part(private_key_sealed, '.', 2) <> $1`, [this.kek.primary]);
    const out = { sealed: 0, resealed: 0 };
    for (const r of rows) {
      let plain: string;
      if (r.private_key_sealed) {
        try {
          plain = this.kek.open(r.private_key_sealed, boundTo(r.kid, r.algorithm, r.public_jwk));
        } catch {
          continue; // reported when the keys load
        }
        out.resealed++;
      } else if (r.private_jwk) {
        plain = JSON.stringify(r.private_jwk);
        out.sealed++;
      } else {
        continue;
      }
      const sealed = this.kek.seal(plain, boundTo(r.kid, r.algorithm, r.public_jwk));
      await tx`UPDATE signing_keys SET private_key_sealed = ${sealed}, private_jwk = NULL WHERE kid = ${r.kid}`;
    }
    return out;
  }

  /** Opens a row's private key; SealError when it is not sealed, does not authenticate or does not match. */
  async open(r: SigningKeyRow): Promise<OpenedKey> {
    if (r.algorithm !== ALG) throw new SealError(`algorithm ${r.algorithm} is not ${ALG}`);
    if (!r.private_key_sealed) throw new SealError('private key not sealed (a plain-text row is sealed only at start)');
    const privateJwk = JSON.parse(this.kek.open(r.private_key_sealed, boundTo(r.kid, r.algorithm, r.public_jwk))) as JWK;
    const pub = r.public_jwk;
    if (privateJwk.kty !== pub.kty || privateJwk.crv !== pub.crv || privateJwk.x !== pub.x || privateJwk.y !== pub.y) {
      throw new SealError('private key does not match the public key');
    }
    return {
      kid: r.kid, publicJwk: pub, sealed: r.private_key_sealed,
      signKey: await importJWK(privateJwk, ALG), verifyKey: await importJWK(pub, ALG),
    };
  }
}
