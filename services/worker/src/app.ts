import { collectProcessMetrics, createLogger, handleShutdown, Readiness, startOpsServer } from '@aijob/platform';
import { Worker } from '@aijob/worker';
import { stopTelemetry } from '@aijob/platform/telemetry';
import { loadWorkerConfig } from './config.js';
import { echo, fail, sleep } from './executors/diagnostics.js';
import { gpuProbe } from './gpu.js';

const config = loadWorkerConfig();
const log = createLogger('worker', config.LOG_LEVEL);
collectProcessMetrics();

const worker = new Worker({
  servers: config.NATS_URL, schedulerAddress: config.SCHEDULER_ADDR, queues: config.WORKER_QUEUES,
  concurrency: config.WORKER_CONCURRENCY, namespace: config.AIJOB_NAMESPACE, workerId: config.WORKER_ID,
  internalToken: config.INTERNAL_TOKEN, log, heartbeatIntervalMs: config.HEARTBEAT_INTERVAL_MS,
  ackWaitMs: config.ACK_WAIT_MS, replicas: config.NATS_REPLICAS, gpu: gpuProbe(),
});
worker.handle('echo', echo).handle('sleep', sleep).handle('fail', fail);
await worker.start();

const readiness = new Readiness({ nats: () => worker.ping() });
const ops = await startOpsServer({ host: config.GRPC_HOST, port: config.OPS_PORT, readiness });
log.info({ ops_port: ops.port }, 'worker service running');

handleShutdown(log, [
  { name: 'readiness', run: () => readiness.drain() },
  { name: 'worker', run: () => worker.stop(config.SHUTDOWN_GRACE_MS) },
  { name: 'ops', run: () => ops.close() },
  { name: 'telemetry', run: () => stopTelemetry() },
], config.SHUTDOWN_GRACE_MS + 15_000);
