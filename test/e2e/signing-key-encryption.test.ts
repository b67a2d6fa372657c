// Signing keys' private halves are sealed at rest with the auth service's key-encryption
// key: real auth processes on a database of their own, the other services not needed.
import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose';
import { AuthServiceClient, type AuthenticateResponse, type IssueTokenResponse } from '@aijob/contracts';
import { runMigrations } from '@aijob/store';
import { Platform, type ServiceProcess } from '../helpers/platform.js';
import { loadAuthConfig } from '../../services/auth/dist/config.js';
import { KeyEncryption } from '../../services/auth/dist/key-encryption.js';
import { boundTo } from '../../services/auth/dist/signing-key-rows.js';

const kek = () => randomBytes(32).toString('base64');

interface StartedAuth {
  proc: ServiceProcess;
  issue: () => Promise<string>;
  verify: (token: string) => Promise<AuthenticateResponse>;
  jwks: () => Promise<JWK[]>;
}
interface ExitedAuth {
  exited: { code: number | null; output: string };
}

/** An auth process of `p` with `env`; resolves its gRPC client, or the start-up output when it exits. */
async function startAuth(t: { teardown: (fn: () => void) => void }, p: Platform, env: Record<string, string>): Promise<StartedAuth | ExitedAuth> {
  const started = p.spawn('auth', { AIJOB_BOOTSTRAP_API_KEY: p.apiKey, ...env }, `auth-${p.procs.length}`);
  const proc = p.procs[p.procs.length - 1]!;
  const exited = proc.exit().then((code) => ({ code, output: proc.raw.join('\n') }));
  const first = await started.then((ports) => ({ ports }), () => exited);
  if (!('ports' in first)) return { exited: first };
  const client = new AuthServiceClient(`127.0.0.1:${first.ports.grpc}`, grpc.credentials.createInsecure());
  t.teardown(() => client.close());
  const call = <R>(fn: (cb: (err: grpc.ServiceError | null, r: R) => void) => void) =>
    new Promise<R>((resolve, reject) => fn((err, r) => (err ? reject(err) : resolve(r))));
  return {
    proc,
    issue: () => call<IssueTokenResponse>((cb) => client.issueToken({ apiKey: p.apiKey }, cb)).then((r) => r.token),
    verify: (token: string) => call<AuthenticateResponse>((cb) => client.authenticate({ token }, cb)),
    jwks: async () => ((await (await fetch(`http://127.0.0.1:${first.ports.ops}/.well-known/jwks.json`)).json()) as { keys: JWK[] }).keys,
  };
}

const kidOf = (token: string) => (JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString()) as { kid: string }).kid;

const p = new Platform();
t.teardown(() => p.stop());

t.test('production refuses to start without a key-encryption key, or with a bad one, and never shows it', async (t) => {
  const missing = await startAuth(t, p, { NODE_ENV: 'production' });
  t.ok('exited' in missing && missing.exited.code !== 0, 'the auth process exits');
  t.match('exited' in missing && missing.exited.output, /SIGNING_KEY_ENCRYPTION_KEY: required with NODE_ENV=production/, 'saying why');
  const bad = 'c2hvcnQ-not-a-real-key-but-secret-looking';
  const problems = (env: Record<string, string>) => {
    try {
      loadAuthConfig(env);
      return [];
    } catch (err) {
      return (err as { problems: string[] }).problems;
    }
  };
  const listed = problems({ NODE_ENV: 'production', SIGNING_KEY_ENCRYPTION_KEY: `${kek()},${bad}`, TOKEN_TTL_SECONDS: '5000' });
  t.match(listed, [/TOKEN_TTL_SECONDS/, /SIGNING_KEY_ENCRYPTION_KEY: key 2 is not 32 bytes of base64/], 'listed with the other problems');
  t.notOk(listed.some((l) => l.includes(bad)), 'the value is not echoed');
  t.match(problems({ NODE_ENV: 'production', SIGNING_KEY_ENCRYPTION_KEY: createHash('sha256')
    .update('aijob development key-encryption key: not a secret').digest('base64') }), [/is the public development key/]);
  t.same(problems({}), [], 'outside production it may be unset (npm start, tests)');
});

t.test('keys are sealed at rest, plain-text rows from before are sealed at start, foreign rows are never used', async (t) => {
  await runMigrations(p.dbUrl);
  const k1 = kek();
  const auth = await startAuth(t, p, { NODE_ENV: 'production', SIGNING_KEY_ENCRYPTION_KEY: k1 });
  if (!('issue' in auth)) throw new Error(`auth did not start: ${auth.exited.output}`);
  const token = await auth.issue();
  const sql = p.sql();
  const [row] = await sql`SELECT kid, public_jwk, private_jwk, private_key_sealed FROM signing_keys WHERE kid = ${kidOf(token)}`;
  t.equal(row!['private_jwk'], null, 'no plain-text private key stored');
  t.match(row!['private_key_sealed'], /^aijob-kek-v1\.[0-9a-f]{16}\./, 'sealed, with the fingerprint of its key-encryption key');
  t.notMatch(row!['private_key_sealed'], (row!['public_jwk'] as JWK).x!, 'nothing of the key readable');
  const opened = JSON.parse(new KeyEncryption([Buffer.from(k1, 'base64')]).open(row!['private_key_sealed'],
    boundTo(row!['kid'], 'ES256', row!['public_jwk']))) as JWK;
  t.ok(opened.d, 'opens with the key-encryption key, and only bound to its row');

  // Someone with the database but not the key-encryption key adds a key of their own.
  const foreign = await generateKeyPair('ES256', { extractable: true });
  const foreignPublic = await exportJWK(foreign.publicKey);
  await sql`INSERT INTO signing_keys (kid, algorithm, public_jwk, private_key_sealed)
    VALUES ('sk_foreign', 'ES256', ${sql.json(foreignPublic as never)}, ${row!['private_key_sealed']})`;
  await sql`INSERT INTO signing_keys (kid, algorithm, public_jwk, private_jwk)
    VALUES ('sk_plain', 'ES256', ${sql.json(foreignPublic as never)}, ${sql.json(await exportJWK(foreign.privateKey) as never)})`;
  const claims = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
  for (const kid of ['sk_foreign', 'sk_plain']) {
    const forged = await new SignJWT({ ...claims, scope: 'admin' }).setProtectedHeader({ alg: 'ES256', kid }).sign(foreign.privateKey);
    await t.rejects(auth.verify(forged), { code: grpc.status.UNAUTHENTICATED }, `a token of ${kid} is refused`);
  }
  t.notOk((await auth.jwks()).some((k) => k.kid === 'sk_foreign' || k.kid === 'sk_plain'), 'JWKS publishes neither');
  await sql`DELETE FROM signing_keys WHERE kid IN ('sk_foreign', 'sk_plain')`;

  // A plain-text signer from before sealing (the newest active key) is sealed when auth starts.
  const legacy = await generateKeyPair('ES256', { extractable: true });
  await sql`UPDATE signing_keys SET rotated_at = now()`;
  await sql`INSERT INTO signing_keys (kid, algorithm, public_jwk, private_jwk)
    VALUES ('sk_legacy', 'ES256', ${sql.json(await exportJWK(legacy.publicKey) as never)}, ${sql.json(await exportJWK(legacy.privateKey) as never)})`;
  await auth.proc.stop();
  const k2 = kek();
  const again = await startAuth(t, p, { NODE_ENV: 'production', SIGNING_KEY_ENCRYPTION_KEY: `${k2},${k1}` });
  if (!('issue' in again)) throw new Error(`auth did not restart: ${again.exited.output}`);
  const rows = await sql`SELECT kid, private_jwk, private_key_sealed FROM signing_keys ORDER BY kid`;
  t.ok(rows.every((r) => r['private_jwk'] === null), 'no plain-text row left');
  const fp = new KeyEncryption([Buffer.from(k2, 'base64')]).primary;
  t.ok(rows.every((r) => String(r['private_key_sealed']).split('.')[1] === fp), 'all sealed with the new first key (old ones sealed again)');
  t.equal(kidOf(await again.issue()), 'sk_legacy', 'the legacy key still signs');
  t.match(await again.verify(token), { principal: { subject: 'key_bootstrap' } }, 'tokens of the older key still verify');
  await again.proc.stop();

  const wrong = await startAuth(t, p, { NODE_ENV: 'production', SIGNING_KEY_ENCRYPTION_KEY: kek() });
  t.ok('exited' in wrong, 'a wrong key-encryption key stops the start');
  t.match('exited' in wrong && wrong.exited.output, /signing key sk_legacy: sealed with key-encryption key [0-9a-f]{16}, which SIGNING_KEY_ENCRYPTION_KEY does not hold/);
  const dev = await startAuth(t, p, {});
  t.ok('exited' in dev, 'nor does the development key open production rows');
});
