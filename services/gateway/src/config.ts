import { hostname } from 'node:os';
import { z } from 'zod';
import { commonEnv, int, loadConfig, port, servicePortVariables } from '@aijob/core';

export const gatewayEnv = {
  LOG_LEVEL: commonEnv.LOG_LEVEL,
  NATS_URL: commonEnv.NATS_URL,
  NATS_USER: commonEnv.NATS_USER,
  NATS_PASSWORD: commonEnv.NATS_PASSWORD,
  AIJOB_NAMESPACE: commonEnv.AIJOB_NAMESPACE,
  GRPC_HOST: commonEnv.GRPC_HOST,
  SHUTDOWN_GRACE_MS: commonEnv.SHUTDOWN_GRACE_MS,
  GRPC_PORT: port(50054),
  OPS_PORT: port(8002),
  AUTH_ADDR: z.string().min(1).default('127.0.0.1:50051'),
  SCHEDULER_ADDR: z.string().min(1).default('127.0.0.1:50053'),
  INTERNAL_TOKEN: z.string().min(16).optional(),
  AUTH_CACHE_MS: int(3_000, 0, 4_000),
  /** Prefix of the worker ids of this gateway's sessions. */
  GATEWAY_ID: z
    .string()
    .regex(/^[\w.:@-]{1,48}$/)
    .default(`${hostname()}-${process.pid}`.slice(0, 48)),
  /** Heartbeats to the scheduler, and the interval workers are asked to beat at. */
  HEARTBEAT_INTERVAL_MS: int(2_000, 100, 60_000),
  /** Redelivery timeout of dispatch messages: must match the NATS workers' (the durable is shared). */
  ACK_WAIT_MS: int(30_000, 1_000, 3_600_000),
  /** After a job's timeout, how long the gateway waits for the worker's result before recording TIMEOUT itself. */
  TIMEOUT_GRACE_MS: int(2_000, 0, 600_000),
  /** Connected workers at once. */
  MAX_SESSIONS: int(1_000, 1, 100_000),
  NATS_REPLICAS: int(1, 1, 5),
};

export type GatewayConfig = ReturnType<typeof loadGatewayConfig>;

export function loadGatewayConfig(env: Record<string, string | undefined> = process.env) {
  return loadConfig(gatewayEnv, env, servicePortVariables('gateway'));
}
