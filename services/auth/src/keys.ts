import { createHash, randomBytes } from 'node:crypto';

const alphabet = 'abcdefghijkmnpqrstuvwxyz23456789';

/** A random lowercase id of `n` characters without look-alike letters. */
export function randomId(n: number): string {
  const bytes = randomBytes(n);
  let out = '';
  for (const b of bytes) out += alphabet[b % alphabet.length];
  return out;
}

export const newWorkspaceId = () => `ws_${randomId(12)}`;

/** SHA-256 of a presented API key: what is stored and looked up. */
export function hashApiKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

/**
 * A new API key. `key` is shown once (aijob_<id>_<secret>, 256 bits of secret);
 * `id` (key_<id>) names it in listings and audit rows.
 */
export function newApiKey(): { id: string; key: string; hash: string } {
  const short = randomId(12);
  const key = `aijob_${short}_${randomBytes(32).toString('base64url')}`;
  return { id: `key_${short}`, key, hash: hashApiKey(key) };
}

/** Whether a credential is shaped like a JWT (three base64url segments). */
export function looksLikeJwt(credential: string): boolean {
  return /^[\w-]+\.[\w-]+\.[\w-]*$/.test(credential);
}
