import { WorkerGatewayServiceService } from '@aijob/contracts';
import { connectBus, EventPublisher, topology } from '@aijob/bus';
import { createLogger } from '@aijob/core';
import { CachedAuthClient, GrpcServer, handleShutdown, Readiness, startOpsServer } from '@aijob/server';
import { collectProcessMetrics } from '@aijob/telemetry';
import { SchedulerLink } from '@aijob/worker';
import { stopTelemetry } from '@aijob/server/telemetry';
import { loadGatewayConfig } from './config.js';
import { connectHandler, tolerant } from './connect-service.js';
import { DispatchHub } from './dispatch-hub.js';

const config = loadGatewayConfig();
const log = createLogger('gateway', config.LOG_LEVEL);
collectProcessMetrics();

const t = topology(config.AIJOB_NAMESPACE);
const bus = await connectBus({
  servers: config.NATS_URL,
  user: config.NATS_USER,
  pass: config.NATS_PASSWORD,
  name: `aijob-gateway-${config.GATEWAY_ID}`,
  log,
});
const events = new EventPublisher(bus.js, t, log);
const scheduler = new SchedulerLink(config.SCHEDULER_ADDR, {
  internalToken: config.INTERNAL_TOKEN,
  intervalMs: config.HEARTBEAT_INTERVAL_MS,
});
const hub = new DispatchHub({
  bus,
  t,
  events,
  scheduler,
  log,
  o: {
    ackWaitMs: config.ACK_WAIT_MS,
    timeoutGraceMs: config.TIMEOUT_GRACE_MS,
    streams: { replicas: config.NATS_REPLICAS, maxAgeMs: 3_600_000 },
  },
});
await hub.start();
const auth = new CachedAuthClient(config.AUTH_ADDR, {
  ttlMs: config.AUTH_CACHE_MS,
  internalToken: config.INTERNAL_TOKEN,
});
const authChanged = bus.nc.subscribe(t.subjects.authChanged, { callback: () => auth.clear() });

let accepting = true;
const grpc = new GrpcServer({ log });
grpc.addUnwrapped(
  tolerant(WorkerGatewayServiceService),
  connectHandler({
    hub,
    authenticate: auth.authenticate,
    gatewayId: config.GATEWAY_ID,
    heartbeatIntervalMs: config.HEARTBEAT_INTERVAL_MS,
    maxSessions: config.MAX_SESSIONS,
    accepting: () => accepting,
    log,
  }),
);
const grpcPort = await grpc.listen(config.GRPC_HOST, config.GRPC_PORT);

// Each session is heartbeaten to the scheduler, at the interval it answers with.
let beatTimer: NodeJS.Timeout | undefined;
let sessionsClosed = false;
const beat = async () => {
  await hub.beat(config.HEARTBEAT_INTERVAL_MS).catch((err: unknown) => log.warn({ err }, 'session heartbeats failed'));
  if (!sessionsClosed) beatTimer = setTimeout(() => void beat(), scheduler.intervalMs);
};
void beat();

const readiness = new Readiness({ nats: bus.ping, auth: () => auth.ping() });
const ops = await startOpsServer({ host: config.GRPC_HOST, port: config.OPS_PORT, readiness });
readiness.watch(2_000, (ready) => grpc.setServing(ready));
log.info({ grpc_port: grpcPort, ops_port: ops.port, id: config.GATEWAY_ID }, 'gateway listening');

handleShutdown(log, [
  {
    name: 'readiness',
    run: () => {
      readiness.drain();
      readiness.stop();
      accepting = false;
    },
  },
  // Sessions' attempts go back to the stream (the same attempt, for another worker) before the streams close.
  {
    name: 'sessions',
    run: async () => {
      // Heartbeats go on until every session is closed (its last beat lists no jobs).
      await hub.stop();
      sessionsClosed = true;
      clearTimeout(beatTimer);
    },
  },
  { name: 'grpc', run: () => grpc.shutdown(1_000) },
  { name: 'events', run: () => events.close() },
  {
    name: 'nats',
    run: () => {
      authChanged.unsubscribe();
      return bus.close();
    },
  },
  { name: 'scheduler link', run: () => scheduler.close() },
  { name: 'auth client', run: () => auth.close() },
  { name: 'ops', run: () => ops.close() },
  { name: 'telemetry', run: () => stopTelemetry() },
]);
