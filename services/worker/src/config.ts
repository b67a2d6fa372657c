import { hostname } from 'node:os';
import { z } from 'zod';
import { commonEnv, int, list, loadConfig, port } from '@aijob/platform';

export const workerEnv = {
  LOG_LEVEL: commonEnv.LOG_LEVEL,
  NATS_URL: commonEnv.NATS_URL,
  AIJOB_NAMESPACE: commonEnv.AIJOB_NAMESPACE,
  GRPC_HOST: commonEnv.GRPC_HOST,
  SHUTDOWN_GRACE_MS: commonEnv.SHUTDOWN_GRACE_MS,
  OPS_PORT: port(9090),
  SCHEDULER_ADDR: z.string().min(1).default('127.0.0.1:50053'),
  INTERNAL_TOKEN: z.string().min(16).optional(),
  WORKER_ID: z.string().regex(/^[\w.:@-]{1,128}$/).default(`${hostname()}-${process.pid}`),
  WORKER_QUEUES: list('default'),
  WORKER_CONCURRENCY: int(10, 1, 10_000),
  HEARTBEAT_INTERVAL_MS: int(2_000, 100, 60_000),
  ACK_WAIT_MS: int(30_000, 1_000, 3_600_000),
  NATS_REPLICAS: int(1, 1, 5),
};

export type WorkerConfig = ReturnType<typeof loadWorkerConfig>;
export const loadWorkerConfig = () => loadConfig(workerEnv);
