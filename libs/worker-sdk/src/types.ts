import type { Logger } from '@aijob/core';

/** The job as a handler sees it. */
export interface JobInfo {
  id: string;
  workspaceId: string;
  queue: string;
  type: string;
  input: Record<string, unknown>;
  labels: Record<string, string>;
  attempt: number;
  maxAttempts: number;
  timeoutMs: number;
  createdAt: Date;
}

/** Tokens a model call used; turned into cost by the job service's price table. */
export interface UsageReport {
  provider: string;
  model: string;
  promptTokens: number;
  completionTokens: number;
}

export interface JobContext {
  /** Aborts on timeout, on CancelJob, and when the worker must stop. `signal.reason` says which. */
  signal: AbortSignal;
  /** 1 for the first run. */
  attempt: number;
  /** Stable across attempts: use it to make the handler's own side effects idempotent. */
  idempotencyKey: string;
  /** Reports progress (0-100) visible in WatchJob. Calls are coalesced. */
  progress(pct: number, note?: string): void;
  /** Records model usage for this attempt. */
  reportUsage(usage: UsageReport): void;
  log: Logger;
}

/** A job handler: returns the job's output (a JSON object; other values are wrapped as `{ result }`). */
export type Handler = (job: JobInfo, ctx: JobContext) => Promise<unknown>;

/** Why a handler's signal was aborted. */
export class AbortReason extends Error {
  constructor(readonly kind: 'timeout' | 'cancelled' | 'shutdown', message: string) {
    super(message);
    this.name = 'AbortReason';
  }
}

export interface WorkerOptions {
  /** NATS servers. */
  servers: string[];
  /** Address of the scheduler's WorkerService (host:port). */
  schedulerAddress: string;
  /** Queues to take work from. Default ["default"]. */
  queues?: string[];
  /** Jobs run at once. Default 10. */
  concurrency?: number;
  /** AIJOB_NAMESPACE of the platform. Default "aijob". */
  namespace?: string;
  workerId?: string;
  internalToken?: string;
  log?: Logger;
  heartbeatIntervalMs?: number;
  /** Redelivery timeout of dispatch messages; in-progress acks keep long jobs alive. */
  ackWaitMs?: number;
  /** Stream replicas, used when this worker is first to create the streams. */
  replicas?: number;
  /** Stream size limit, used when this worker is first to create the streams. */
  streamMaxBytes?: number;
  /** GPU facts for heartbeats, read at each beat. */
  gpu?: () => Promise<{ count: number; utilization?: number }>;
}
