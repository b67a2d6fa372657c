import { JobServiceService } from '@aijob/contracts';
import { connectBus, ensureDurable, ensureStreams, EventPublisher, topology } from '@aijob/bus';
import { createLogger, mutatingRpcs } from '@aijob/core';
import { activeTraceId, collectProcessMetrics } from '@aijob/telemetry';
import {
  CachedAuthClient, GrpcServer, handleShutdown, makeAuthorizer, Readiness, startOpsServer, type CallContext,
} from '@aijob/server';
import { AuditWriter, auditDenied, auditRefused, createStore, runMigrations } from '@aijob/store';
import { PendingLimits } from './pending-limits.js';
import { PriceTable } from './prices.js';
import { DeadLetters } from './dead-letters.js';
import { UsageReports } from './usage-report.js';
import { AnnouncedTypes } from './worker-types.js';
import { RateLimiter } from './rate-limiter.js';
import { stopTelemetry } from '@aijob/server/telemetry';
import { loadJobConfig } from './config.js';
import { EventApplier } from './event-applier.js';
import { JobRepository } from './job-repository.js';
import { jobServiceHandlers } from './job-service.js';
import { Jobs } from './jobs.js';
import { Submitter } from './submitter.js';
import { WatchHub } from './watch-hub.js';

const config = loadJobConfig();
const log = createLogger('job', config.LOG_LEVEL);
collectProcessMetrics();

if (config.MIGRATE_ON_START) await runMigrations(config.DATABASE_URL);
const store = createStore(config.DATABASE_URL, { max: config.DATABASE_POOL_MAX, applicationName: 'aijob-job' });
const t = topology(config.AIJOB_NAMESPACE);
const bus = await connectBus({ servers: config.NATS_URL, user: config.NATS_USER, pass: config.NATS_PASSWORD, name: 'aijob-job', log });
/** Streams and this service's durable, created if missing (at start, and again if NATS lost them). */
async function openEvents() {
  await ensureStreams(bus.jsm, t, { replicas: config.NATS_REPLICAS, maxAgeMs: config.STREAM_MAX_AGE_MS, maxBytes: config.STREAM_MAX_BYTES });
  await ensureDurable(bus.jsm, t.streams.events, t.consumers.jobState, t.subjects.allEvents,
    { ackWaitMs: 30_000, maxAckPending: 20_000 });
  return bus.js.consumers.get(t.streams.events, t.consumers.jobState);
}
await openEvents();

const auth = new CachedAuthClient(config.AUTH_ADDR, { ttlMs: config.AUTH_CACHE_MS, internalToken: config.INTERNAL_TOKEN });
const authChanged = bus.nc.subscribe(t.subjects.authChanged, { callback: () => auth.clear() });
const events = new EventPublisher(bus.js, t, log);
const audit = new AuditWriter(store.sql, log);
const limiter = new RateLimiter(store);
const pruning = setInterval(() => void limiter.prune().catch(() => undefined), 600_000).unref();
const submitter = new Submitter(store, bus.js, t, log, { idempotencyWindowMs: config.IDEMPOTENCY_WINDOW_MS });
const hub = new WatchHub(bus.nc, t, log);
hub.start();
const announced = new AnnouncedTypes(bus.nc, t.buckets.workers, log);
announced.start();
const usage = new UsageReports(store);
const jobs = new Jobs({
  repo: new JobRepository(store), submitter, hub, events, nc: bus.nc, topology: t, audit,
  pending: new PendingLimits(store, config.MAX_PENDING), usage,
  announcedTypes: () => (config.ACCEPT_ANNOUNCED_JOB_TYPES ? announced.types() : new Set<string>()),
  limits: {
    maxInputBytes: config.MAX_INPUT_BYTES, defaultMaxAttempts: config.DEFAULT_MAX_ATTEMPTS,
    defaultTimeoutMs: config.DEFAULT_TIMEOUT_MS, allowedTypes: config.ALLOWED_JOB_TYPES_DEFAULT,
  },
});
const prices = PriceTable.from({ json: config.LLM_PRICES, file: config.LLM_PRICES_FILE });
const applier = new EventApplier(store, bus.nc, events, t, log, prices, {
  retryBaseMs: config.RETRY_BASE_MS, retryMaxMs: config.RETRY_MAX_MS,
});
const applying = applier.start(openEvents);

const denied = auditDenied(audit);
const authorize = makeAuthorizer({ authenticate: auth.authenticate, internalToken: config.INTERNAL_TOKEN, onDenied: denied });
/** Access check, then the workspace's shared rate limit. */
async function admit(ctx: CallContext, access: string): Promise<void> {
  await authorize(ctx, access);
  if (!ctx.principal || !ctx.policy) return;
  try {
    await limiter.take(ctx.principal.workspaceId, ctx.policy.rateLimitPerMinute);
  } catch (err) {
    if (mutatingRpcs.has(ctx.method)) {
      audit.record({
        actor: ctx.principal.subject, workspaceId: ctx.principal.workspaceId, action: `rpc.${ctx.method.split('/')[1]}`,
        resource: ctx.method, outcome: 'denied', reason: (err as Error).message, traceId: activeTraceId(), requestId: ctx.requestId,
      });
    }
    throw err;
  }
}
const grpc = new GrpcServer({ log, authorize: admit, maxMessageBytes: config.MAX_REQUEST_BYTES, onHandlerError: auditRefused(audit, { notFound: true }) });
grpc.add(JobServiceService, jobServiceHandlers(jobs, new DeadLetters({ store, submitter, hub, audit }), usage));
const grpcPort = await grpc.listen(config.GRPC_HOST, config.GRPC_PORT);

const readiness = new Readiness({ postgres: store.ping, nats: bus.ping, auth: () => auth.ping() });
const ops = await startOpsServer({ host: config.GRPC_HOST, port: config.OPS_PORT, readiness });
readiness.watch(2_000, (ready) => grpc.setServing(ready));
log.info({ grpc_port: grpcPort, ops_port: ops.port }, 'job service listening');

handleShutdown(log, [
  { name: 'readiness', run: () => { readiness.drain(); readiness.stop(); } },
  // Watches would hold the server for the whole grace period: end them first, clients resume elsewhere.
  { name: 'watches', run: () => hub.drain() },
  { name: 'grpc', run: () => grpc.shutdown(config.SHUTDOWN_GRACE_MS) },
  { name: 'submitter', run: () => submitter.close() },
  { name: 'event applier', run: () => applying.stop() },
  { name: 'events', run: () => events.close() },
  { name: 'audit', run: () => { clearInterval(pruning); return audit.close(); } },
  { name: 'watch hub', run: () => { hub.stop(); authChanged.unsubscribe(); return announced.stop(); } },
  { name: 'ops', run: () => ops.close() },
  { name: 'nats', run: () => bus.close() },
  { name: 'postgres', run: () => store.close() },
  { name: 'auth client', run: () => auth.close() },
  { name: 'telemetry', run: () => stopTelemetry() },
]);
