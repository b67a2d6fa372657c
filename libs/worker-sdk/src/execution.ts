import type { JsMsg } from '@nats-io/jetstream';
import { durationToMs, JobEvent, JobState, msToDuration, type DispatchedJob, type JobUsage } from '@aijob/contracts';
import type { Logger } from '@aijob/core';
import { inSpan } from '@aijob/telemetry';
import { failureOf, type JobFailure } from './errors.js';
import { AbortReason, type Handler, type JobInfo, type UsageReport } from './types.js';

const MAX_OUTPUT_BYTES = 4 * 1024 * 1024;

export interface ExecutionDeps {
  workerId: string;
  log: Logger;
  emit: (event: JobEvent) => Promise<void>;
}

/** The outcome of one attempt; `handed_back` when the worker stopped before it ended. */
export type Outcome =
  | { kind: 'succeeded'; outputJson: string }
  | { kind: 'failed'; failure: JobFailure }
  | { kind: 'cancelled' }
  | { kind: 'handed_back' };

/**
 * Runs one attempt: RUNNING event, the handler under its timeout and cancel signal,
 * in-progress acks while it runs, then the end event. The dispatch message is acked
 * only after the end event is stored, so a crash before that redelivers the work.
 */
export class Execution {
  readonly info: JobInfo;
  /** Why the attempt was stopped, once it was (timeout, CancelJob, shutdown). */
  private reason: AbortReason | undefined;
  /**
   * Made when the handler first reads `ctx.signal` (most handlers of short jobs never do:
   * an AbortController per job is a measurable share of a busy worker's CPU).
   */
  private controller: AbortController | undefined;
  /** Rejects the running handler's race (see `race`). */
  private stopRace: ((reason: AbortReason) => void) | undefined;
  private usage: JobUsage[] = [];
  private lastProgress: { pct: number; note: string } | undefined;
  private progressTimer: NodeJS.Timeout | undefined;
  readonly startedAt = new Date();

  constructor(readonly job: DispatchedJob, private readonly msg: JsMsg, private readonly d: ExecutionDeps) {
    this.info = {
      id: job.jobId, workspaceId: job.workspaceId, queue: job.queue, type: job.type, input: inputOf(job),
      labels: job.labels, attempt: job.attempt, maxAttempts: job.maxAttempts,
      timeoutMs: job.timeout ? durationToMs(job.timeout) : 300_000, createdAt: job.createdAt ?? new Date(),
    };
  }

  cancel(kind: AbortReason['kind'], message: string): void {
    if (this.reason) return;
    this.reason = new AbortReason(kind, message);
    this.controller?.abort(this.reason);
    this.stopRace?.(this.reason);
  }

  /** The handler's abort signal, made on first use (already aborted when the attempt was stopped before). */
  private get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.reason) this.controller.abort(this.reason);
    }
    return this.controller.signal;
  }

  /** Runs the attempt in a span continuing the job's trace (the admission span is its parent). */
  run(handler: Handler | undefined): Promise<Outcome> {
    return inSpan(`aijob.execute ${this.info.type}`, this.job.traceparent, {
      'aijob.job_id': this.info.id, 'aijob.queue': this.info.queue, 'aijob.attempt': this.info.attempt, 'aijob.type': this.info.type,
    }, async (traceparent, span) => {
      this.traceparent = traceparent;
      const outcome = await this.attempt(handler);
      span.setAttribute('aijob.outcome', outcome.kind);
      if (outcome.kind === 'failed') span.setAttribute('aijob.error_code', outcome.failure.code);
      return outcome;
    });
  }

  private traceparent = '';

  /** Tells JetStream the attempt is still being worked on, so the message is not redelivered. */
  keepAlive(): void {
    this.msg.working();
  }

  /** Returns a handed-back attempt's message to the stream, for another worker at once. */
  release(): void {
    this.msg.nak();
  }

  /** The attempt's logger, made on first use (a pino child costs more than most handlers). */
  private get log(): Logger {
    this.logger ??= this.d.log.child({ job_id: this.info.id, attempt: this.info.attempt, type: this.info.type });
    return this.logger;
  }

  private logger: Logger | undefined;

  private async attempt(handler: Handler | undefined): Promise<Outcome> {
    void this.d.emit(this.event(JobState.JOB_STATE_RUNNING, {})).catch(() => undefined);
    const timeout = setTimeout(() => this.cancel('timeout', `timed out after ${this.info.timeoutMs} ms`), this.info.timeoutMs);
    let outcome: Outcome;
    try {
      if (!handler) throw failureAsError({ code: 'UNKNOWN_JOB_TYPE', message: `no handler for job type "${this.info.type}"`, retryable: false });
      // eslint-disable-next-line @typescript-eslint/no-this-alias
      const exec = this;
      const result = await this.race(handler(this.info, {
        get signal() { return exec.signal; },
        attempt: this.info.attempt,
        idempotencyKey: this.job.idempotencyKey || this.info.id,
        progress: (pct, note) => this.progress(pct, note ?? ''),
        reportUsage: (u) => this.record(u),
        get log() { return exec.log; },
      }));
      outcome = { kind: 'succeeded', outputJson: asOutputJson(result) };
    } catch (err) {
      outcome = this.outcomeOf(err);
    } finally {
      clearTimeout(timeout);
      if (this.progressTimer) clearTimeout(this.progressTimer);
    }
    if (outcome.kind === 'handed_back') {
      // The job goes back to DISPATCHED for the same attempt (no attempt counted); the
      // worker returns its message to the stream once its last heartbeat no longer lists it.
      await this.d.emit(this.event(JobState.JOB_STATE_DISPATCHED, { previousState: JobState.JOB_STATE_RUNNING }));
      this.log.info('attempt handed back at shutdown');
      return outcome;
    }
    const end = outcome.kind === 'succeeded'
      ? this.event(JobState.JOB_STATE_SUCCEEDED, { outputJson: Buffer.from(outcome.outputJson) })
      : outcome.kind === 'cancelled'
        ? this.event(JobState.JOB_STATE_CANCELLED, { error: { code: 'CANCELLED', message: 'cancelled', retryable: false } })
        : this.event(JobState.JOB_STATE_FAILED, { error: {
          code: outcome.failure.code, message: outcome.failure.message, retryable: outcome.failure.retryable,
          retryAfter: outcome.failure.retryAfterMs !== undefined ? msToDuration(outcome.failure.retryAfterMs) : undefined,
        } });
    await this.d.emit(end);
    this.msg.ack();
    if (outcome.kind === 'failed') this.log.info({ code: outcome.failure.code, retryable: outcome.failure.retryable }, 'attempt failed');
    return outcome;
  }

  /** Settles with the handler, or rejects as soon as the attempt is stopped (a handler may ignore its signal). */
  private race<T>(p: Promise<T>): Promise<T> {
    if (this.reason) return Promise.reject(this.reason);
    return new Promise<T>((resolve, reject) => {
      this.stopRace = reject;
      p.then(resolve, reject);
    }).finally(() => { this.stopRace = undefined; });
  }

  private outcomeOf(err: unknown): Outcome {
    const reason = this.reason;
    if (reason) {
      if (reason.kind === 'cancelled') return { kind: 'cancelled' };
      if (reason.kind === 'timeout') return { kind: 'failed', failure: { code: 'TIMEOUT', message: reason.message, retryable: true } };
      return { kind: 'handed_back' };
    }
    if (err instanceof OutputError) return { kind: 'failed', failure: { code: 'OUTPUT_INVALID', message: err.message, retryable: false } };
    return { kind: 'failed', failure: err instanceof FailureError ? err.failure : failureOf(err) };
  }

  private progress(pct: number, note: string): void {
    if (!Number.isFinite(pct)) return;
    this.lastProgress = { pct: Math.min(100, Math.max(0, pct)), note: note.slice(0, 1024) };
    if (this.progressTimer) return;
    this.progressTimer = setTimeout(() => {
      this.progressTimer = undefined;
      const p = this.lastProgress!;
      void this.d.emit(this.event(JobState.JOB_STATE_RUNNING, { hasProgress: true, progress: p.pct, progressNote: p.note }))
        .catch(() => undefined);
    }, 200);
  }

  private record(u: UsageReport): void {
    this.usage.push({
      provider: u.provider, model: u.model, promptTokens: Math.max(0, Math.trunc(u.promptTokens)),
      completionTokens: Math.max(0, Math.trunc(u.completionTokens)), costUsd: 0,
    });
  }

  private event(state: JobState, extra: Partial<JobEvent>): JobEvent {
    return JobEvent.fromPartial({
      jobId: this.info.id, attempt: this.info.attempt, state, workerId: this.d.workerId, at: new Date(),
      usage: state === JobState.JOB_STATE_RUNNING ? [] : this.usage, queue: this.info.queue,
      workspaceId: this.info.workspaceId, traceparent: this.traceparent || this.job.traceparent, source: 'worker', startedAt: this.startedAt,
      gangId: this.job.gangId, gangSize: this.job.gangSize, ...extra,
    });
  }
}

class FailureError extends Error {
  constructor(readonly failure: JobFailure) { super(failure.message); }
}
const failureAsError = (f: JobFailure) => new FailureError(f);

class OutputError extends Error {}

/** The job's input: the JSON text the scheduler passed through, or the older Struct form. */
function inputOf(job: DispatchedJob): Record<string, unknown> {
  if (job.inputJson.length === 0) return job.input ?? {};
  const value: unknown = JSON.parse(Buffer.from(job.inputJson.buffer, job.inputJson.byteOffset, job.inputJson.byteLength).toString('utf8'));
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? value as Record<string, unknown> : {};
}

/** The handler's result as the JSON text of a job output object. */
function asOutputJson(result: unknown): string {
  const value = result === undefined ? {} : result;
  const obj = value !== null && typeof value === 'object' && !Array.isArray(value) ? value as Record<string, unknown> : { result: value };
  let json: string | undefined;
  try { json = JSON.stringify(obj) as string | undefined; } catch (err) { throw new OutputError(`output is not JSON: ${(err as Error).message}`); }
  // An object whose toJSON gives something else (a Date gives a string) is wrapped like any value.
  if (json === undefined) json = '{}';
  else if (json[0] !== '{') json = `{"result":${json}}`;
  if (Buffer.byteLength(json) > MAX_OUTPUT_BYTES) throw new OutputError(`output exceeds ${MAX_OUTPUT_BYTES} bytes`);
  return json;
}

