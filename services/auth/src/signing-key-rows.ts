import { importJWK, type JWK } from 'jose';
import {
  insertSigningKey, setSealedSigningKey, signingKeysToSeal, unretiredSigningKeys, type DbTx, type SigningKeyRow, type Store,
} from '@aijob/store';
import { SealError, type KeyEncryption } from './key-encryption.js';

export const ALG = 'ES256';

/** A signing key whose sealed private half opened: it may sign and verify. */
export interface OpenedKey {
  kid: string;
  publicJwk: JWK;
  /** The sealed value it was opened from (a changed one is opened again). */
  sealed: string;
  signKey: Awaited<ReturnType<typeof importJWK>>;
  verifyKey: Awaited<ReturnType<typeof importJWK>>;
}

/** A row's public key, as jose takes it. */
const publicJwkOf = (r: SigningKeyRow) => r.publicJwk as JWK;

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
  unretired(): Promise<SigningKeyRow[]> {
    return unretiredSigningKeys(this.store.db);
  }

  async insert(tx: DbTx, kid: string, publicJwk: JWK, privateJwk: JWK): Promise<void> {
    const sealed = this.kek.seal(JSON.stringify(privateJwk), boundTo(kid, ALG, publicJwk));
    await insertSigningKey(tx, { kid, algorithm: ALG, publicJwk, privateKeySealed: sealed });
  }

  /**
   * Seals the plain-text private keys of rows from before sealing, and seals again with
   * the first key-encryption key what an older one sealed. Run at start, under the
   * caller's lock; returns how many rows changed.
   */
  async sealLegacy(tx: DbTx): Promise<{ sealed: number; resealed: number }> {
    const rows = await signingKeysToSeal(tx, this.kek.primary);
    const out = { sealed: 0, resealed: 0 };
    for (const r of rows) {
      let plain: string;
      if (r.privateKeySealed) {
        try {
          plain = this.kek.open(r.privateKeySealed, boundTo(r.kid, r.algorithm, publicJwkOf(r)));
        } catch {
          continue; // reported when the keys load
        }
        out.resealed++;
      } else if (r.privateJwk) {
        plain = JSON.stringify(r.privateJwk);
        out.sealed++;
      } else {
        continue;
      }
      const sealed = this.kek.seal(plain, boundTo(r.kid, r.algorithm, publicJwkOf(r)));
      await setSealedSigningKey(tx, r.kid, sealed);
    }
    return out;
  }

  /** Opens a row's private key; SealError when it is not sealed, does not authenticate or does not match. */
  async open(r: SigningKeyRow): Promise<OpenedKey> {
    if (r.algorithm !== ALG) throw new SealError(`algorithm ${r.algorithm} is not ${ALG}`);
    if (!r.privateKeySealed) throw new SealError('private key not sealed (a plain-text row is sealed only at start)');
    const pub = publicJwkOf(r);
    const privateJwk = JSON.parse(this.kek.open(r.privateKeySealed, boundTo(r.kid, r.algorithm, pub))) as JWK;
    if (privateJwk.kty !== pub.kty || privateJwk.crv !== pub.crv || privateJwk.x !== pub.x || privateJwk.y !== pub.y) {
      throw new SealError('private key does not match the public key');
    }
    return {
      kid: r.kid, publicJwk: pub, sealed: r.privateKeySealed,
      signKey: await importJWK(privateJwk, ALG), verifyKey: await importJWK(pub, ALG),
    };
  }
}
