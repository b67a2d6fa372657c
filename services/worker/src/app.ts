import { createLogger } from '@aijob/core';
import { collectProcessMetrics } from '@aijob/telemetry';
import { handleShutdown, Readiness, startOpsServer } from '@aijob/server';
import { withCredentials } from '@aijob/bus';
import { Worker } from '@aijob/worker';
import { stopTelemetry } from '@aijob/server/telemetry';
import { loadWorkerConfig } from './config.js';
import { echo, fail, sleep } from './executors/diagnostics.js';
import { httpRequestHandler } from './executors/http-request.js';
import { llmChat } from './executors/llm-chat.js';
import { gpuProbe } from './gpu.js';

const config = loadWorkerConfig();
const log = createLogger('worker', config.LOG_LEVEL);
collectProcessMetrics();

const worker = new Worker({
  servers: withCredentials(config.NATS_URL, config.NATS_USER, config.NATS_PASSWORD), schedulerAddress: config.SCHEDULER_ADDR, queues: config.WORKER_QUEUES,
  concurrency: config.WORKER_CONCURRENCY, namespace: config.AIJOB_NAMESPACE, workerId: config.WORKER_ID,
  internalToken: config.INTERNAL_TOKEN, log, heartbeatIntervalMs: config.HEARTBEAT_INTERVAL_MS,
  ackWaitMs: config.ACK_WAIT_MS, replicas: config.NATS_REPLICAS, gpu: gpuProbe(),
});
worker.handle('echo', echo).handle('sleep', sleep).handle('fail', fail)
  .handle('llm.chat', llmChat({ providers: config.providers, defaultProvider: config.LLM_DEFAULT_PROVIDER, timeoutMs: config.LLM_TIMEOUT_MS }))
  .handle('http.request', httpRequestHandler({
    allowedHosts: config.HTTP_ALLOWED_HOSTS, allowPrivate: config.HTTP_ALLOW_PRIVATE,
    maxResponseBytes: config.HTTP_MAX_RESPONSE_BYTES, timeoutMs: config.HTTP_TIMEOUT_MS,
  }));
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
