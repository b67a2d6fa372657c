import { QueueServiceService, WorkerServiceService } from '@aijob/contracts';
import { connectBus, EventPublisher, topology } from '@aijob/bus';
import { createLogger } from '@aijob/core';
import { collectProcessMetrics } from '@aijob/telemetry';
import { CachedAuthClient, GrpcServer, handleShutdown, makeAuthorizer, Readiness, startOpsServer } from '@aijob/server';
import { AuditWriter, auditDenied, auditRefused, createStore, runMigrations } from '@aijob/store';
import { stopTelemetry } from '@aijob/server/telemetry';
import { loadSchedulerConfig } from './config.js';
import { Controller } from './controller.js';
import { Dispatcher } from './dispatcher.js';
import { LeaderElection } from './leader-election.js';
import { TableMaintenance } from './table-maintenance.js';
import { QueueRepository } from './queue-repository.js';
import { queueServiceHandlers } from './queue-service.js';
import { workerServiceHandlers } from './worker-service.js';
import { WorkerRegistry } from './worker-registry.js';

const LEASE = 'scheduler';
const config = loadSchedulerConfig();
const log = createLogger('scheduler', config.LOG_LEVEL);
collectProcessMetrics();

if (config.MIGRATE_ON_START) await runMigrations(config.DATABASE_URL);
const store = createStore(config.DATABASE_URL, { max: config.DATABASE_POOL_MAX, applicationName: 'aijob-scheduler' });
const t = topology(config.AIJOB_NAMESPACE);
const bus = await connectBus({ servers: config.NATS_URL, user: config.NATS_USER, pass: config.NATS_PASSWORD, name: 'aijob-scheduler', log });

const registry = new WorkerRegistry(bus.nc, {
  bucket: t.buckets.workers, intervalMs: config.HEARTBEAT_INTERVAL_MS, replicas: config.NATS_REPLICAS, log,
});
await registry.start();
const events = new EventPublisher(bus.js, t, log);
const queues = new QueueRepository(store, {
  maxConcurrency: config.DEFAULT_QUEUE_CONCURRENCY, ratePerSecond: config.DEFAULT_QUEUE_RATE, weight: 1, paused: false,
});
const controller = new Controller({
  store, bus, topology: t, queues, registry, events, log, reconcileIntervalMs: config.RECONCILE_INTERVAL_MS,
  streams: { replicas: config.NATS_REPLICAS, maxAgeMs: config.STREAM_MAX_AGE_MS, maxBytes: config.STREAM_MAX_BYTES },
  dispatcher: new Dispatcher(store, bus.js, bus.nc, t, log, { leaseName: LEASE, holder: config.SCHEDULER_ID }),
  reconcile: {
    dispatchStuckMs: config.DISPATCH_STUCK_MS, gangPlacementTimeoutMs: config.GANG_PLACEMENT_TIMEOUT_MS,
    heartbeatIntervalMs: config.HEARTBEAT_INTERVAL_MS,
  },
});
const election = new LeaderElection(store, config.SCHEDULER_ID, log, {
  name: LEASE, ttlMs: config.LEADER_LEASE_MS, onElected: (l) => controller.onElected(l),
});
await controller.ensureConsumers();
election.start();
const maintenanceStore = createStore(config.DATABASE_URL, { max: 1, applicationName: 'aijob-scheduler-maintenance' });
const maintenance = new TableMaintenance(maintenanceStore.sql, log, {
  mode: config.DB_MAINTENANCE, intervalMs: config.DB_MAINTENANCE_INTERVAL_MS,
  minDeadRows: config.DB_MAINTENANCE_MIN_ROWS, deadRatio: config.DB_MAINTENANCE_RATIO,
});
maintenance.start(() => controller.isLeading);
const queueChanges = bus.nc.subscribe(t.subjects.queuesChanged, {
  callback: () => void controller.reloadQueues().catch((err: unknown) => log.warn({ err }, 'queue reload failed')),
});

const auth = new CachedAuthClient(config.AUTH_ADDR, { ttlMs: config.AUTH_CACHE_MS, internalToken: config.INTERNAL_TOKEN });
const authChanged = bus.nc.subscribe(t.subjects.authChanged, { callback: () => auth.clear() });
const audit = new AuditWriter(store.sql, log);
const grpc = new GrpcServer({
  log,
  authorize: makeAuthorizer({ authenticate: auth.authenticate, internalToken: config.INTERNAL_TOKEN, onDenied: auditDenied(audit) }),
  onHandlerError: auditRefused(audit),
});
grpc.add(QueueServiceService, queueServiceHandlers({
  queues, registry, store, audit, events, leaseName: LEASE, changed: () => bus.nc.publish(t.subjects.queuesChanged),
}));
grpc.add(WorkerServiceService, workerServiceHandlers({ registry, store, intervalMs: config.HEARTBEAT_INTERVAL_MS }));
const grpcPort = await grpc.listen(config.GRPC_HOST, config.GRPC_PORT);

const readiness = new Readiness({ postgres: store.ping, nats: bus.ping });
const ops = await startOpsServer({ host: config.GRPC_HOST, port: config.OPS_PORT, readiness });
readiness.watch(2_000, (ready) => grpc.setServing(ready));
log.info({ grpc_port: grpcPort, ops_port: ops.port, id: config.SCHEDULER_ID }, 'scheduler listening');

handleShutdown(log, [
  { name: 'readiness', run: () => { readiness.drain(); readiness.stop(); } },
  { name: 'leadership', run: async () => { await election.stop(); await controller.stopped(); } },
  { name: 'table maintenance', run: async () => { await maintenance.stop(); await maintenanceStore.close(); } },
  { name: 'grpc', run: () => grpc.shutdown(config.SHUTDOWN_GRACE_MS) },
  { name: 'events', run: () => events.close() },
  { name: 'audit', run: () => audit.close() },
  { name: 'registry', run: () => { authChanged.unsubscribe(); queueChanges.unsubscribe(); return registry.stop(); } },
  { name: 'ops', run: () => ops.close() },
  { name: 'nats', run: () => bus.close() },
  { name: 'postgres', run: () => store.close() },
  { name: 'auth client', run: () => auth.close() },
  { name: 'telemetry', run: () => stopTelemetry() },
]);
