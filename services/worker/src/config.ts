import { hostname } from 'node:os';
import { z } from 'zod';
import { bool, commonEnv, int, list, loadConfig, port } from '@aijob/platform';
import { parseProviders } from './llm-config.js';

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
  /** LLM providers for llm.chat, JSON: see llm-config.ts and the README. */
  LLM_PROVIDERS: z.string().default('{}'),
  LLM_DEFAULT_PROVIDER: z.string().optional(),
  /** Per model call. */
  LLM_TIMEOUT_MS: int(15_000, 100, 600_000),
  /** http.request: hosts (host or host:port, *.example.com) jobs may call. Empty: none. */
  HTTP_ALLOWED_HOSTS: list(''),
  /** Let http.request reach loopback, private and link-local addresses (tests, internal webhooks). */
  HTTP_ALLOW_PRIVATE: bool(false),
  HTTP_MAX_RESPONSE_BYTES: int(1024 * 1024, 1, 64 * 1024 * 1024),
  HTTP_TIMEOUT_MS: int(15_000, 100, 600_000),
};

export type WorkerConfig = ReturnType<typeof loadWorkerConfig>;
/** The worker's settings, with the LLM providers resolved (their keys may name other variables). */
export function loadWorkerConfig(env: Record<string, string | undefined> = process.env) {
  const config = loadConfig(workerEnv, env);
  return { ...config, providers: parseProviders(config.LLM_PROVIDERS, env) };
}
