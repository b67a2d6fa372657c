import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';

const FORMAT = 'aijob-kek-v1';
const KEY = /^[A-Za-z0-9+/_-]{43}=?$/;

/**
 * The key-encryption key of development runs (`npm start`, tests) when
 * SIGNING_KEY_ENCRYPTION_KEY is unset. It is public, so it protects nothing, and with
 * NODE_ENV=production it is neither used nor accepted: a row sealed with it (by a dev
 * run, or by anyone who read this file) does not open there.
 */
const DEVELOPMENT_KEK = createHash('sha256').update('aijob development key-encryption key: not a secret').digest();

/** Why a sealed private key did not open. */
export class SealError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SealError';
  }
}

/** The short public name of a key-encryption key, stored beside what it sealed. */
export function kekFingerprint(kek: Buffer): string {
  return createHash('sha256').update('aijob signing-key KEK\0').update(kek).digest('hex').slice(0, 16);
}

/**
 * Parses SIGNING_KEY_ENCRYPTION_KEY: comma-separated base64 keys of 32 bytes, the first
 * sealing and every one opening (so a new key can be rolled out before the old one goes).
 * Problems go to `problems`, never quoting the value: it is a secret.
 */
export function parseKeks(value: string | undefined, production: boolean, problems: string[]): Buffer[] {
  const name = 'SIGNING_KEY_ENCRYPTION_KEY';
  if (!value) {
    if (production) {
      problems.push(`${name}: required with NODE_ENV=production (32 random bytes, base64: \`openssl rand -base64 32\`, from a Secret)`);
    }
    return [];
  }
  const keys: Buffer[] = [];
  value.split(',').map((s) => s.trim()).filter(Boolean).forEach((s, i) => {
    const k = Buffer.from(s, 'base64');
    if (!KEY.test(s) || k.length !== 32) problems.push(`${name}: key ${i + 1} is not 32 bytes of base64 (value not shown)`);
    else if (production && k.equals(DEVELOPMENT_KEK)) problems.push(`${name}: key ${i + 1} is the public development key`);
    else keys.push(k);
  });
  if (keys.length === 0 && problems.length === 0) problems.push(`${name}: no key given`);
  return keys;
}

/**
 * Seals and opens signing keys' private JWKs with AES-256-GCM under a key-encryption
 * key. The associated data binds a sealed key to its row (kid, algorithm, public key):
 * a sealed value copied to another row, or a row whose public key was swapped, does not open.
 */
export class KeyEncryption {
  private readonly byFingerprint: Map<string, Buffer>;
  /** Whether this is the public development key (no SIGNING_KEY_ENCRYPTION_KEY outside production). */
  readonly development: boolean;

  constructor(keks: Buffer[]) {
    this.development = keks.length === 0;
    const all = this.development ? [DEVELOPMENT_KEK] : keks;
    this.byFingerprint = new Map(all.map((k) => [kekFingerprint(k), k]));
  }

  /** Fingerprint of the key that seals. */
  get primary(): string {
    return this.byFingerprint.keys().next().value!;
  }

  seal(plaintext: string, aad: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.byFingerprint.get(this.primary)!, iv);
    cipher.setAAD(Buffer.from(aad));
    const ct = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return [FORMAT, this.primary, iv.toString('base64url'), ct.toString('base64url'), cipher.getAuthTag().toString('base64url')].join('.');
  }

  open(sealed: string, aad: string): string {
    const [format, fp, iv, ct, tag, ...rest] = sealed.split('.');
    if (format !== FORMAT || !fp || !iv || !ct || !tag || rest.length) throw new SealError('not a sealed key of a known format');
    const kek = this.byFingerprint.get(fp);
    if (!kek) throw new SealError(`sealed with key-encryption key ${fp}, which SIGNING_KEY_ENCRYPTION_KEY does not hold`);
    try {
      const decipher = createDecipheriv('aes-256-gcm', kek, Buffer.from(iv, 'base64url'), { authTagLength: 16 });
      decipher.setAAD(Buffer.from(aad));
      decipher.setAuthTag(Buffer.from(tag, 'base64url'));
      return Buffer.concat([decipher.update(Buffer.from(ct, 'base64url')), decipher.final()]).toString('utf8');
    } catch {
      throw new SealError('does not authenticate (tampered, or sealed for another row)');
    }
  }

  /** Whether a sealed value should be sealed again with the primary key. */
  stale(sealed: string): boolean {
    return sealed.split('.')[1] !== this.primary;
  }
}
