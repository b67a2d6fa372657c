import { z } from 'zod';
import { bool, commonEnv, int, list, loadConfig, port, servicePortVariables } from '@aijob/core';

export const jobEnv = {
  ...commonEnv,
  GRPC_PORT: port(50052),
  OPS_PORT: port(8000),
  AUTH_ADDR: z.string().min(1).default('127.0.0.1:50051'),
  INTERNAL_TOKEN: z.string().min(16).optional(),
  /** Largest job input accepted, in bytes of its JSON form. */
  MAX_INPUT_BYTES: int(1024 * 1024, 1, 64 * 1024 * 1024),
  /** Largest gRPC request accepted, in bytes (a SubmitJobs of many inputs). */
  MAX_REQUEST_BYTES: int(16 * 1024 * 1024, 1024, 256 * 1024 * 1024),
  DEFAULT_MAX_ATTEMPTS: int(3, 1, 100),
  DEFAULT_TIMEOUT_MS: int(300_000, 1, 86_400_000),
  /** Retry backoff: full jitter over base * 2^(attempt-1), capped. */
  RETRY_BASE_MS: int(1_000, 1, 3_600_000),
  RETRY_MAX_MS: int(300_000, 1, 86_400_000),
  /** A repeated idempotency key within this window returns the first job. */
  IDEMPOTENCY_WINDOW_MS: int(86_400_000, 1_000, 30 * 86_400_000),
  /** Job types accepted by default (a workspace policy may narrow them). */
  ALLOWED_JOB_TYPES_DEFAULT: list('echo,sleep,fail,llm.chat,http.request'),
  /** How long authentication results are cached (keep under 5 s: revocation promise). */
  AUTH_CACHE_MS: int(3_000, 0, 4_000),
  /** Price table, USD per million tokens: JSON like {"openai/gpt-4o-mini":{"prompt":0.15,"completion":0.6}}. */
  LLM_PRICES: z.string().optional(),
  /** The same, from a file (wins over LLM_PRICES). */
  LLM_PRICES_FILE: z.string().optional(),
  /** Job types workers announced in their heartbeats are accepted too (besides ALLOWED_JOB_TYPES_DEFAULT). */
  ACCEPT_ANNOUNCED_JOB_TYPES: bool(true),
  /** Backpressure: SubmitJob answers RESOURCE_EXHAUSTED while more jobs than this wait. 0 disables. */
  MAX_PENDING: int(100_000, 0, 1_000_000_000),
  NATS_REPLICAS: int(1, 1, 5),
  STREAM_MAX_AGE_MS: int(3_600_000, 60_000, 30 * 86_400_000),
  /** File storage JetStream reserves for each of the events and submissions streams. */
  STREAM_MAX_BYTES: int(4 * 1024 ** 3, 1024 ** 2, 1024 ** 4),
  MIGRATE_ON_START: bool(false),
};

export type JobConfig = ReturnType<typeof loadJobConfig>;
export const loadJobConfig = (env?: Record<string, string | undefined>) => loadConfig(jobEnv, env, servicePortVariables('job'));
