import t from 'tap';
import { createHmac, createPublicKey, randomBytes } from 'node:crypto';
import { generateKeyPair, importJWK, SignJWT, type JWK } from 'jose';
import { UnauthenticatedError, type AijobClient } from '@aijob/sdk';
import { startPlatform, waitFor } from '../helpers/platform.js';
import { KeyEncryption } from '../../services/auth/dist/key-encryption.js';
import { boundTo } from '../../services/auth/dist/signing-key-rows.js';

const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
const kek = randomBytes(32);

async function refused(c: AijobClient): Promise<boolean> {
  return c.listPage({}).then(() => false, (e: unknown) => e instanceof UnauthenticatedError);
}

/** One platform for the attacks and the rotation (which follows them): two job replicas, keys sealed with `kek`. */
const p = await startPlatform(t, { workers: 0, jobReplicas: 2, serviceEnv: { auth: { SIGNING_KEY_ENCRYPTION_KEY: kek.toString('base64') } } });

t.test('forged, expired and misaddressed tokens are refused and audited', async (t) => {
  const admin = p.client();
  const { token } = await admin.admin.issueToken(p.apiKey);
  await t.resolves(p.client({ token }).listPage({}), 'a token from IssueToken works');
  const [header, payload] = token.split('.') as [string, string];
  const claims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as Record<string, unknown>;
  const { kid } = JSON.parse(Buffer.from(header, 'base64url').toString()) as { kid: string };
  t.ok((claims['exp'] as number) - (claims['iat'] as number) <= 900, 'tokens live at most 15 minutes');
  t.equal(claims['aud'], 'aijob');
  t.equal(claims['iss'], 'aijob');

  // The real signing key, read from the database and opened with the key-encryption key,
  // to make tokens that differ in one claim only.
  const [row] = await p.sql()`SELECT public_jwk, private_key_sealed FROM signing_keys WHERE kid = ${kid}`;
  const privateJwk = JSON.parse(new KeyEncryption([kek]).open(row!['private_key_sealed'], boundTo(kid, 'ES256', row!['public_jwk']))) as JWK;
  const realKey = await importJWK(privateJwk, 'ES256');
  const sign = (c: Record<string, unknown>, key = realKey, k = kid) =>
    new SignJWT(c).setProtectedHeader({ alg: 'ES256', kid: k }).sign(key);
  const now = Math.floor(Date.now() / 1000);
  const other = await generateKeyPair('ES256');
  const jwks = await (await fetch(`http://127.0.0.1:${p.ops['auth']}/.well-known/jwks.json`)).json() as { keys: JWK[] };
  const publicPem = createPublicKey({ key: jwks.keys[0]! as never, format: 'jwk' }).export({ type: 'spki', format: 'pem' }).toString();
  const hs256 = (secret: string) => {
    const h = b64({ alg: 'HS256', kid, typ: 'JWT' });
    const body = b64(claims);
    return `${h}.${body}.${createHmac('sha256', secret).update(`${h}.${body}`).digest('base64url')}`;
  };

  const attacks: [string, string][] = [
    ['signed by another key, same kid', await sign(claims, other.privateKey)],
    ['signed by another key, unknown kid', await sign(claims, other.privateKey, 'sk_unknown')],
    ['alg none', `${b64({ alg: 'none', kid })}.${b64(claims)}.`],
    ['HS256 keyed with the public JWK', hs256(JSON.stringify(jwks.keys[0]))],
    ['HS256 keyed with the PEM-encoded public key', hs256(publicPem)],
    ['HS256 keyed with the PEM, no final newline', hs256(publicPem.trimEnd())],
    ['expired', await sign({ ...claims, iat: now - 3600, exp: now - 60 })],
    ['wrong audience', await sign({ ...claims, aud: 'someone-else' })],
    ['wrong issuer', await sign({ ...claims, iss: 'evil' })],
    ['tampered payload', `${header}.${b64({ ...claims, scope: 'admin', ws: 'ws_other' })}.${token.split('.')[2]}`],
  ];
  for (const [i, [name, forged]] of attacks.entries()) {
    t.ok(await refused(p.client({ token: forged, address: p.jobAddrs[i % 2] })), `${name}: UNAUTHENTICATED`);
  }
  const rows = await waitFor(async () => {
    const r = await p.sql()`SELECT actor, reason FROM audit_log WHERE outcome = 'denied'`;
    return r.length >= attacks.length ? r : undefined;
  }, 10_000, 'an audit row per attack');
  t.equal(rows.length, attacks.length, 'each attack left one audit row');
  t.ok(rows.every((r) => r['actor'] === 'anonymous (token)'), 'as an anonymous token');
});

t.test('rotation: old tokens keep working until their key retires, then stop within 5 s on every replica', async (t) => {
  const admin = p.client();
  const before = (await admin.admin.issueToken(p.apiKey)).token;
  const oldKid = (JSON.parse(Buffer.from(before.split('.')[0]!, 'base64url').toString()) as { kid: string }).kid;
  const replicas = p.jobAddrs.map((address) => p.client({ token: before, address }));
  for (const r of replicas) await r.listPage({}); // in both replicas' auth caches now
  const rotated = await admin.admin.rotateSigningKey(4_000);
  const retireAt = rotated.retireAt!.getTime();
  t.not(rotated.kid, oldKid, 'a new key signs');
  t.same(rotated.retiringKids, [oldKid]);
  const after = (await admin.admin.issueToken(p.apiKey)).token;
  t.equal((JSON.parse(Buffer.from(after.split('.')[0]!, 'base64url').toString()) as { kid: string }).kid, rotated.kid);
  for (const r of replicas) await t.resolves(r.listPage({}), 'the old token still works right after rotation, on each replica');
  t.ok(Date.now() < retireAt, 'before its key retires');
  const jwksKids = async () => ((await (await fetch(`http://127.0.0.1:${p.ops['auth']}/.well-known/jwks.json`)).json()) as
    { keys: { kid: string }[] }).keys.map((k) => k.kid).sort();
  t.same(await jwksKids(), [oldKid, rotated.kid].sort(), 'JWKS publishes both until retirement');
  // Retired after 4 s; refused on every replica within 5 s of that, caches included.
  const refusedAfter = await Promise.all(replicas.map(async (r) => {
    await waitFor(() => refused(r), 15_000, 'the old token to be refused', 50);
    return Date.now() - retireAt;
  }));
  for (const ms of refusedAfter) t.ok(ms >= 0 && ms < 5_000, `refused ${ms} ms after its key retired, not before`);
  t.same(await jwksKids(), [rotated.kid], 'JWKS drops the retired key');
  await t.resolves(p.client({ token: after }).listPage({}), 'the new token works');
  const audit = await p.sql()`SELECT outcome FROM audit_log WHERE action = 'signing_key.rotate'`;
  t.same(audit.map((r) => r['outcome']), ['allowed']);
});

t.test('the SDK exchanges its key for tokens and refreshes them before they expire', async (t) => {
  const p = await startPlatform(t, { workers: 0, serviceEnv: { auth: { TOKEN_TTL_SECONDS: '5' } } });
  const c = p.client({ exchangeTokens: true });
  const md1 = (await c.metadata()).get('authorization')[0] as string;
  t.match(md1, /^Bearer ey/, 'calls carry a JWT');
  await c.listPage({});
  // 80% of 5 s later the client holds a fresh token; calls keep working throughout.
  const md2 = await waitFor(async () => {
    await c.listPage({});
    const m = (await c.metadata()).get('authorization')[0] as string;
    return m !== md1 ? m : undefined;
  }, 10_000, 'a refreshed token', 250);
  t.not(md2, md1, 'the token was refreshed');
  await waitFor(() => refused(p.client({ token: md1.slice(7) })), 10_000, 'the first token to expire');
  await t.resolves(c.listPage({}), 'the client keeps working past the first token\'s expiry');
});
