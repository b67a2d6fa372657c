import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import postgres from 'postgres';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { AijobClient } from '@aijob/sdk';
import { runMigrations } from '@aijob/store';
import { freePorts } from './nats-server.js';
import { onTerminate, repoRoot, ServiceProcess, waitFor } from './processes.js';

export const PG_BASE = process.env['AIJOB_TEST_PG'] ?? 'postgres://postgres@127.0.0.1:5432';
export const NATS_URL = process.env['AIJOB_TEST_NATS'] ?? 'nats://127.0.0.1:4222';

export type ServiceName = 'auth' | 'job' | 'scheduler' | 'worker' | 'gateway';

export interface PlatformOptions {
  /** Another Postgres (postgres://user@host:port) or NATS than the shared ones. */
  pgBase?: string;
  natsUrl?: string;
  workers?: number;
  schedulers?: number;
  jobReplicas?: number;
  /** Extra environment for every service, or per service. */
  env?: Record<string, string>;
  serviceEnv?: Partial<Record<ServiceName, Record<string, string>>>;
}

/** A whole platform on this machine: its own database, NATS namespace and free ports. */
export class Platform {
  readonly id = `t${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
  readonly apiKey = `aijob_test_${randomBytes(24).toString('base64url')}`;
  readonly dbName = `aijob_${this.id}`;
  readonly pgBase: string;
  readonly natsUrl: string;
  readonly dbUrl: string;
  readonly namespace = this.id;
  readonly procs: ServiceProcess[] = [];
  authAddr = '';
  jobAddrs: string[] = [];
  schedulerAddrs: string[] = [];
  /** Set by startGateway (only tests of gRPC workers start one). */
  gatewayAddr = '';
  ops: Record<string, number> = {};
  private clients: AijobClient[] = [];

  constructor(readonly o: PlatformOptions = {}) {
    this.pgBase = o.pgBase ?? PG_BASE;
    this.natsUrl = o.natsUrl ?? NATS_URL;
    this.dbUrl = `${this.pgBase}/${this.dbName}`;
  }

  get jobAddr(): string {
    return this.jobAddrs[0]!;
  }

  get schedulerAddr(): string {
    return this.schedulerAddrs[0]!;
  }

  async start(): Promise<this> {
    await runMigrations(this.dbUrl);
    // The gRPC ports of auth and the schedulers are chosen first, so that every service
    // can start at once knowing where the others will be. Schedulers still start one
    // after another, so that scheduler-0 leads; workers wait for it, so that their first
    // heartbeat finds it.
    const [authPort, ...schedulerPorts] = await freePorts(1 + (this.o.schedulers ?? 1));
    this.authAddr = `127.0.0.1:${authPort}`;
    this.schedulerAddrs = schedulerPorts.map((port) => `127.0.0.1:${port}`);
    const auth = this.spawn('auth', { AIJOB_BOOTSTRAP_API_KEY: this.apiKey, GRPC_PORT: String(authPort) });
    const jobs = Promise.all(Array.from({ length: this.o.jobReplicas ?? 1 }, (_, i) => this.spawn('job', {}, `job-${i}`)));
    let workers: Promise<unknown> = Promise.resolve();
    const schedulers = (async () => {
      for (const [i, port] of schedulerPorts.entries()) {
        await this.spawn('scheduler', { SCHEDULER_ID: `${this.id}-scheduler-${i}`, GRPC_PORT: String(port) }, `scheduler-${i}`);
        if (i === 0) workers = Promise.all(Array.from({ length: this.o.workers ?? 1 }, () => this.addWorker()));
      }
    })();
    const [started] = await Promise.all([jobs, auth, schedulers]);
    this.jobAddrs.push(...started.map((j) => `127.0.0.1:${j.grpc}`));
    await workers;
    return this;
  }

  /** Starts another worker process; returns it. */
  async addWorker(env: Record<string, string> = {}): Promise<ServiceProcess> {
    const n = this.procs.filter((p) => p.name.startsWith('worker')).length;
    await this.spawn('worker', { WORKER_ID: `${this.id}-worker-${n}`, ...env }, `worker-${n}`);
    return this.procs[this.procs.length - 1]!;
  }

  /** Starts the worker gateway (WorkerGatewayService), for workers over gRPC; returns its address. */
  async startGateway(env: Record<string, string> = {}): Promise<string> {
    const { grpc } = await this.spawn('gateway', { GATEWAY_ID: `${this.id}-gateway`, ...env });
    this.gatewayAddr = `127.0.0.1:${grpc}`;
    return this.gatewayAddr;
  }

  /** Environment of a service of this platform. */
  env(service: ServiceName): Record<string, string> {
    return {
      DATABASE_URL: this.dbUrl,
      NATS_URL: this.natsUrl,
      AIJOB_NAMESPACE: this.namespace,
      GRPC_HOST: '127.0.0.1',
      GRPC_PORT: '0',
      OPS_PORT: '0',
      LOG_LEVEL: 'info',
      DATABASE_POOL_MAX: '4',
      AUTH_ADDR: this.authAddr,
      // Every scheduler replica: grpc-js fails over between the addresses of an ipv4: target.
      SCHEDULER_ADDR: this.schedulerAddrs.length ? `ipv4:${this.schedulerAddrs.join(',')}` : '',
      HEARTBEAT_INTERVAL_MS: '500',
      RECONCILE_INTERVAL_MS: '1000',
      SHUTDOWN_GRACE_MS: '5000',
      // JetStream reserves this much disk per stream: small, so many test platforms fit on one server.
      STREAM_MAX_BYTES: String(64 * 1024 ** 2),
      ...this.o.env,
      ...this.o.serviceEnv?.[service],
    };
  }

  /** Starts a service process and waits until it listens; returns its ports. */
  async spawn(service: ServiceName, env: Record<string, string> = {}, name: string = service): Promise<{ grpc: number; ops: number }> {
    const p = new ServiceProcess(name, join(repoRoot, 'services', service, 'dist', 'main.js'), { ...this.env(service), ...env });
    this.procs.push(p);
    const line = await p.waitForLine((l) => typeof l['ops_port'] === 'number', 60_000);
    this.ops[name] = line['ops_port'] as number;
    return { grpc: (line['grpc_port'] as number) ?? 0, ops: line['ops_port'] as number };
  }

  proc(name: string): ServiceProcess {
    const p = this.procs.find((x) => x.name === name && x.running) ?? this.procs.find((x) => x.name === name);
    if (!p) throw new Error(`no process ${name}`);
    return p;
  }

  /** An SDK client with the bootstrap admin key (closed at stop). */
  client(opts: { apiKey?: string; token?: string; address?: string; exchangeTokens?: boolean } = {}): AijobClient {
    const c = new AijobClient({
      address: opts.address ?? this.jobAddr, queueAddress: this.schedulerAddr, authAddress: this.authAddr,
      ...(opts.token ? { token: opts.token } : { apiKey: opts.apiKey ?? this.apiKey }),
      exchangeTokens: opts.exchangeTokens ?? false, deadlineMs: 20_000,
    });
    this.clients.push(c);
    return c;
  }

  /** A plain SQL client of this platform's database (one per platform, closed at stop). */
  sql(): postgres.Sql {
    this.sqlClient ??= postgres(this.dbUrl, { max: 2, onnotice: () => {} });
    return this.sqlClient;
  }
  private sqlClient: postgres.Sql | undefined;

  async metrics(name: string): Promise<string> {
    const res = await fetch(`http://127.0.0.1:${this.ops[name]}/metrics`);
    return res.text();
  }

  /** Stops everything and removes the database, streams and buckets it made. */
  async stop(): Promise<void> {
    for (const c of this.clients) c.close();
    await this.sqlClient?.end({ timeout: 2 });
    // The test is over, so workers are killed rather than drained: a graceful worker stop
    // waits out its pending 2 s pull (the tests of graceful stops stop workers themselves).
    // The other services still stop gracefully, which takes them a few milliseconds.
    await Promise.all(this.procs.filter((p) => p.name.startsWith('worker')).map((p) => p.kill()));
    await Promise.all(this.procs.map((p) => p.stop()));
    await dropNamespace(this.namespace, this.natsUrl).catch(() => undefined);
    const admin = postgres(`${this.pgBase}/postgres`, { max: 1, onnotice: () => {} });
    try {
      await admin.unsafe(`DROP DATABASE IF EXISTS "${this.dbName}" WITH (FORCE)`);
    } finally {
      await admin.end({ timeout: 2 });
    }
  }
}

/** Deletes every stream (and KV bucket stream) of a namespace. */
export async function dropNamespace(ns: string, servers = NATS_URL): Promise<void> {
  const nc = await connect({ servers, timeout: 3_000 });
  try {
    const jsm = await jetstreamManager(nc);
    const prefix = ns.toUpperCase() + '_';
    for await (const s of jsm.streams.list()) {
      const name = s.config.name;
      if (name.startsWith(prefix) || name === `KV_${ns}_workers`) await jsm.streams.delete(name).catch(() => false);
    }
  } finally {
    await nc.close();
  }
}

/** Starts a platform for a test and stops it at the test's end. */
export async function startPlatform(t: { teardown: (fn: () => Promise<void>) => void }, o: PlatformOptions = {}): Promise<Platform> {
  const p = new Platform(o);
  const forget = onTerminate(() => p.stop());
  t.teardown(() => { forget(); return p.stop(); });
  await p.start();
  return p;
}

export { waitFor, ServiceProcess };
