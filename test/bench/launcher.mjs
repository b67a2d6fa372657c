// Starts the platform's four services as processes for the benchmark (its own database
// and NATS namespace), or uses one given by address (RemotePlatform).
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import postgres from 'postgres';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { runMigrations } from '@aijob/store';
import { countingClient } from './db-work.mjs';
import { natsPids, pidsMatching } from './procs.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

export class BenchPlatform {
  constructor(o = {}) {
    this.id = `bench${randomBytes(3).toString('hex')}`;
    this.pg = o.pg ?? 'postgres://postgres@127.0.0.1:5432';
    this.nats = o.nats ?? 'nats://127.0.0.1:4222';
    this.dbUrl = `${this.pg}/aijob_${this.id}`;
    this.apiKey = `aijob_bench_${randomBytes(24).toString('base64url')}`;
    this.workers = o.workers ?? 2;
    this.concurrency = o.concurrency ?? 256;
    this.procs = [];
  }

  env(extra = {}) {
    return {
      PATH: process.env.PATH, ...(process.env.BENCH_NODE_OPTIONS ? { NODE_OPTIONS: process.env.BENCH_NODE_OPTIONS } : {}), DATABASE_URL: this.dbUrl, NATS_URL: this.nats, AIJOB_NAMESPACE: this.id, GRPC_HOST: '127.0.0.1',
      GRPC_PORT: '0', OPS_PORT: '0', LOG_LEVEL: 'warn', AUTH_ADDR: this.authAddr ?? '', SCHEDULER_ADDR: this.schedulerAddr ?? '',
      MAX_PENDING: '2000000', DATABASE_POOL_MAX: '16', STREAM_MAX_BYTES: String(1024 ** 3), ...(process.env.OTEL_SDK_DISABLED ? { OTEL_SDK_DISABLED: 'true' } : {}), ...extra,
    };
  }

  async spawn(service, extra = {}) {
    // BENCH_PROFILE=job (or scheduler, worker, auth, or several: job,scheduler) writes a CPU profile of
    // each such process to .aijob/profiles/<platform id>/<service>; test/bench/profile-summary.mjs reads them.
    const profiled = (process.env.BENCH_PROFILE ?? '').split(',').includes(service);
    const prof = profiled ? ['--cpu-prof', '--cpu-prof-dir', join(root, '.aijob', 'profiles', this.id, service)] : [];
    const child = spawn(process.execPath, [...prof, join(root, 'services', service, 'dist', 'main.js')], {
      env: { ...this.env(extra), LOG_LEVEL: 'info' }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.procs.push({ service, child });
    return new Promise((resolve, reject) => {
      let buf = '';
      const onData = (d) => {
        buf += d.toString();
        for (const line of buf.split('\n')) {
          try {
            const l = JSON.parse(line);
            if (typeof l.ops_port === 'number') { child.stdout.off('data', onData); resolve({ grpc: l.grpc_port, ops: l.ops_port, pid: child.pid }); }
          } catch { /* partial line */ }
        }
      };
      child.stdout.on('data', onData);
      child.stderr.on('data', () => undefined);
      child.once('exit', (code) => reject(new Error(`${service} exited ${code}`)));
    });
  }

  async start() {
    await runMigrations(this.dbUrl);
    this.auth = await this.spawn('auth', { AIJOB_BOOTSTRAP_API_KEY: this.apiKey });
    this.authAddr = `127.0.0.1:${this.auth.grpc}`;
    this.scheduler = await this.spawn('scheduler');
    this.schedulerAddr = `127.0.0.1:${this.scheduler.grpc}`;
    this.job = await this.spawn('job');
    this.jobAddr = `127.0.0.1:${this.job.grpc}`;
    this.workerProcs = [];
    for (let i = 0; i < this.workers; i++) {
      this.workerProcs.push(await this.spawn('worker', { WORKER_CONCURRENCY: String(this.concurrency), WORKER_ID: `${this.id}-w${i}` }));
    }
    ({ sql: this.sql, count: this.ownStatements } = countingClient(this.dbUrl));
    await this.watchBackends();
    return this;
  }

  pids(service) {
    return this.procs.filter((p) => p.service === service && p.child.exitCode === null).map((p) => p.child.pid);
  }

  /** The Postgres backends serving this platform's database (polled from pg_stat_activity). */
  postgresPids() {
    return this.backends;
  }

  natsPids() {
    return natsPids(this.nats);
  }

  /** Polls which backends serve the database, from the `postgres` database so as not to count there. */
  async watchBackends() {
    this.admin = postgres(`${this.pg}/postgres`, { max: 1, onnotice: () => {} });
    const poll = async () => {
      this.backends = (await this.admin`SELECT pid FROM pg_stat_activity WHERE datname = ${`aijob_${this.id}`}`).map((r) => r.pid);
    };
    await poll();
    this.backendTimer = setInterval(() => void poll().catch(() => undefined), 200);
  }

  async stop() {
    clearInterval(this.backendTimer);
    await this.admin?.end({ timeout: 2 });
    await this.sql?.end({ timeout: 2 });
    await Promise.all(this.procs.map(({ child }) => new Promise((r) => {
      if (child.exitCode !== null) return r();
      child.once('exit', r);
      child.kill('SIGTERM');
      setTimeout(() => child.kill('SIGKILL'), 15_000).unref();
    })));
    const nc = await connect({ servers: this.nats });
    const jsm = await jetstreamManager(nc);
    for await (const s of jsm.streams.list()) {
      if (s.config.name.startsWith(this.id.toUpperCase() + '_') || s.config.name === `KV_${this.id}_workers`) await jsm.streams.delete(s.config.name);
    }
    await nc.close();
    const admin = postgres(`${this.pg}/postgres`, { max: 1, onnotice: () => {} });
    await admin.unsafe(`DROP DATABASE IF EXISTS "aijob_${this.id}" WITH (FORCE)`);
    await admin.end();
  }
}

/**
 * A platform that is already running (`npm start`, or a deployment), given by address.
 * Completions are read from its Postgres (`--database-url`); resources are sampled for
 * the services' processes found on this machine, if any.
 */
export class RemotePlatform {
  constructor(o) {
    this.id = `bench${randomBytes(3).toString('hex')}`;
    this.remote = true;
    this.jobAddr = o.address;
    this.schedulerAddr = o.schedulerAddress;
    this.apiKey = o.apiKey;
    this.dbUrl = o.databaseUrl;
  }

  async start() {
    ({ sql: this.sql, count: this.ownStatements } = countingClient(this.dbUrl));
    await this.sql`SELECT 1 FROM jobs LIMIT 1`;
    return this;
  }

  pids(service) {
    return pidsMatching(new RegExp(`services/${service}/dist/main\\.js`));
  }

  async stop() {
    await this.sql?.end({ timeout: 2 });
  }
}

/** Command-line options that pick the platform to measure (shared by bench and soak). */
export const targetOptions = {
  address: { type: 'string' },
  'scheduler-address': { type: 'string' },
  'api-key': { type: 'string', default: process.env.AIJOB_API_KEY },
  'database-url': { type: 'string', default: process.env.DATABASE_URL },
  workers: { type: 'string', default: '2' },
  concurrency: { type: 'string', default: '256' },
};

/** The platform the options name, started and ready; Ctrl-C stops what it started. */
export async function openTarget(values) {
  if (!values.address) {
    const platform = new BenchPlatform({ workers: Number(values.workers), concurrency: Number(values.concurrency) });
    for (const sig of ['SIGINT', 'SIGTERM']) {
      process.once(sig, () => { platform.stop().finally(() => process.exit(130)); });
    }
    return platform.start();
  }
  const missing = ['api-key', 'database-url'].filter((k) => !values[k]);
  if (missing.length) throw new Error(`--address needs ${missing.map((k) => `--${k}`).join(' and ')} (completions are read from Postgres)`);
  const host = values.address.replace(/:\d+$/, '');
  return new RemotePlatform({
    address: values.address, schedulerAddress: values['scheduler-address'] ?? `${host}:50053`,
    apiKey: values['api-key'], databaseUrl: values['database-url'],
  }).start();
}
