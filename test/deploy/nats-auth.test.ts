// NATS requires a login: the accounts in deploy/nats/values.yaml, the Secret keys the NATS
// servers and the services read, and the users the services log in as agree; and a real
// nats-server given the config the chart renders from those values lets each service in
// (with JetStream) and nobody without the password.
import t from 'tap';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { connect } from '@nats-io/transport-node';
import { connectBus, withCredentials } from '@aijob/bus';
import { createLogger } from '@aijob/core';
import { freePort } from '../helpers/nats-server.js';
import { waitFor } from '../helpers/processes.js';
import { build, documents, find, readText, type K8s } from './manifest-files.js';
import { containerEnv, services } from './workload-env.js';

const run = promisify(execFile);
const values = documents(['deploy/nats/values.yaml'])[0]!.obj;
const base = build('deploy/k8s/base');
const users = (values['config']['merge']['accounts']['AIJOB']['users'] as { user: string; password: string }[]);
/** The chart's `<< $VAR >>`: the raw token $VAR, which nats-server resolves from its environment. */
const variableOf = (password: string) => /^<< \$(\w+) >>$/.exec(password)?.[1];
/** Server-side: NATS user → the aijob-secrets key its password comes from. */
const serverKeys = new Map(users.map((u) => {
  const env = values['container']['env'][variableOf(u.password) ?? ''];
  const ref = env?.valueFrom?.secretKeyRef;
  return [u.user, ref?.name === 'aijob-secrets' ? ref.key as string : undefined] as const;
}));
/** Client-side: each service's NATS_USER and the Secret key of its NATS_PASSWORD. */
const clients = services.map((s) => {
  const c = find(base, 'Deployment', `aijob-${s}`)['spec']['template']['spec']['containers'][0] as K8s;
  const env = containerEnv(base, c);
  const key = ((c['env'] ?? []) as K8s[]).find((e) => e['name'] === 'NATS_PASSWORD')?.['valueFrom']?.secretKeyRef?.key as string | undefined;
  return { service: s, user: env.values['NATS_USER'], key };
});

t.test('every client logs in as a user the servers know, with the password from the same Secret key', async (t) => {
  t.ok(users.length >= 5, 'a user per service and one for nats-box');
  t.equal(values['config']['merge']['accounts']['AIJOB']['jetstream'], 'enabled', 'the account has JetStream');
  for (const u of users) {
    t.ok(variableOf(u.password), `${u.user}: the password is an environment variable, not in the values`);
    t.ok(serverKeys.get(u.user), `${u.user}: the servers read it from aijob-secrets`);
  }
  const keys = [...serverKeys.values()];
  t.equal(new Set(keys).size, keys.length, 'every user has its own password');
  for (const c of clients) {
    t.ok(c.user && serverKeys.has(c.user), `${c.service} logs in as ${c.user}`);
    t.equal(c.key, serverKeys.get(c.user!), `${c.service}: NATS_PASSWORD is the key the servers check (${c.key})`);
  }
  t.equal(new Set(clients.map((c) => c.user)).size, clients.length, 'one user per service');
  const box = values['natsBox']['container']['env'];
  t.ok(serverKeys.has(box['NATS_USER']), `nats-box logs in as ${box['NATS_USER']}`);
  t.equal(box['NATS_PASSWORD']['valueFrom']['secretKeyRef']['key'], serverKeys.get(box['NATS_USER']));
});

t.test('a nats-server with the rendered config admits exactly the configured logins', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'aijob-nats-auth-'));
  const port = await freePort();
  // The passwords as the README makes them (nats-server parses them as config values).
  const readme = readText('README.md');
  const secrets = Object.fromEntries(await Promise.all([...serverKeys.values()].map(async (k) => {
    const expr = new RegExp(`--from-literal=${k}="([^"]+)"`).exec(readme)?.[1];
    if (!expr) throw new Error(`the README does not create ${k}`);
    return [k!, (await run('sh', ['-c', `printf %s "${expr}"`])).stdout] as const;
  })));
  // What the chart writes into nats.conf: its generated settings, then config.merge, as
  // JSON with `<< … >>` values unquoted.
  const conf = JSON.stringify({ port, host: '127.0.0.1', jetstream: { store_dir: dir }, ...values['config']['merge'] }, null, 2)
    .replace(/"<< (.*?) >>"/g, '$1');
  writeFileSync(join(dir, 'nats.conf'), conf);
  const env: Record<string, string> = { ...process.env as Record<string, string> };
  for (const u of users) env[variableOf(u.password)!] = secrets[serverKeys.get(u.user)!]!;
  const server = spawn('nats-server', ['-c', join(dir, 'nats.conf')], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  server.stderr!.on('data', (b: Buffer) => { stderr += b.toString(); });
  t.teardown(() => { server.kill('SIGTERM'); rmSync(dir, { recursive: true, force: true }); });
  const url = `nats://127.0.0.1:${port}`;
  await waitFor(async () => connect({ servers: url, user: 'admin', pass: secrets[serverKeys.get('admin')!], maxReconnectAttempts: 0 })
    .then(async (nc) => { await nc.close(); return true; }).catch(() => (server.exitCode !== null ? Promise.reject(new Error(stderr)) : false)),
  10_000, 'nats-server with the rendered config');

  const log = createLogger('nats-auth-test', 'silent');
  for (const c of clients) {
    const pass = secrets[c.key!]!;
    // The worker hands its servers to the worker SDK, so its credentials travel in the URL.
    const bus = c.service === 'worker'
      ? await connectBus({ servers: withCredentials([url], c.user, pass), name: c.service, log })
      : await connectBus({ servers: [url], user: c.user, pass, name: c.service, log });
    const stream = `AUTHTEST_${c.service.toUpperCase()}`;
    await bus.jsm.streams.add({ name: stream, subjects: [`authtest.${c.service}.>`] });
    t.equal((await bus.jsm.streams.info(stream)).config.name, stream, `${c.user}: logged in, JetStream available`);
    await bus.close();
  }
  const refused = (opts: { user?: string; pass?: string }) =>
    connect({ servers: url, maxReconnectAttempts: 0, ...opts }).then(async (nc) => { await nc.close(); return false; }, () => true);
  t.ok(await refused({}), 'no credentials: refused');
  t.ok(await refused({ user: 'aijob-job', pass: 'wrong' }), 'a wrong password: refused');
  t.ok(await refused({ user: 'aijob-job', pass: secrets[serverKeys.get('aijob-worker')!] }), 'another user\'s password: refused');
});
