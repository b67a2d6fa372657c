import type { JsMsg } from '@nats-io/jetstream';
import {
  CancelReason,
  DispatchedJob,
  JobEvent,
  JobOutcome,
  JobState,
  durationToMs,
  msToDuration,
  type JobProgress,
  type JobResult,
  type JobUsage,
  type ResultAck,
} from '@aijob/contracts';
import { decode, ensureDurable, ensureStreams, type Bus, type EventPublisher, type Topology } from '@aijob/bus';
import type { SchedulerLink } from '@aijob/worker';
import { DeadlineExceededError, errorMessage, UnavailableError, type Logger } from '@aijob/core';
import { counter, gauge, inSpan } from '@aijob/telemetry';
import { QueuePuller, type Claim } from './queue-puller.js';
import { outputJsonOf } from './validation.js';
import type { HeldAttempt, WorkerSession } from './worker-session.js';

/** Messages older than this are checked with the scheduler before running (as NATS workers do). */
const STALE_MS = 30_000;
/** A job no connected worker has a handler for goes back for others; after this many deliveries it fails. */
const PASS_ON_DELIVERIES = 20;
const PASS_ON_DELAY_MS = 500;
/** Sessions serve the type but are all busy: back to the stream, soon again. */
const BUSY_DELAY_MS = 100;

export interface HubOptions {
  ackWaitMs: number;
  timeoutGraceMs: number;
  streams: { replicas: number; maxAgeMs: number };
}

/**
 * The gateway's side of the NATS worker protocol, for all its sessions at once: pulls
 * each served queue, hands attempts to sessions, keeps their messages alive with
 * in-progress acks, routes cancellations, and stores what workers report as job events
 * (acking a dispatch message only after its end event is stored). Fencing: a report is
 * accepted only for an attempt this session holds now; everything else is refused.
 */
export class DispatchHub {
  readonly sessions = new Set<WorkerSession>();
  private readonly held = new Map<string, HeldAttempt>();
  private readonly pullers = new Map<string, QueuePuller>();
  private readonly recentlyCancelled = new Map<string, number>();
  private keepAliveTimer: NodeJS.Timeout | undefined;
  private cancels: { unsubscribe(): void } | undefined;
  private readonly metrics = {
    reports: counter('gateway_reports_total', 'Results and hand-backs from workers, by outcome (accepted, refused).', [
      'outcome',
    ]),
    attempts: counter('gateway_attempts_total', 'Attempts handed to workers, and how they ended.', ['queue', 'status']),
    skipped: counter('worker_dispatches_skipped_total', 'Dispatch messages dropped as stale or cancelled.', ['reason']),
  };

  constructor(
    private readonly d: {
      bus: Bus;
      t: Topology;
      events: EventPublisher;
      scheduler: SchedulerLink;
      log: Logger;
      o: HubOptions;
    },
  ) {
    const sessions = this.sessions;
    gauge('gateway_sessions', 'Workers connected to this gateway.', [], function () {
      this.set(sessions.size);
    });
    const held = this.held;
    gauge('gateway_attempts_in_hand', 'Attempts held for connected workers.', [], function () {
      this.set(held.size);
    });
  }

  async start(): Promise<void> {
    await ensureStreams(this.d.bus.jsm, this.d.t, this.d.o.streams, true);
    this.cancels = this.d.bus.nc.subscribe(this.d.t.subjects.allCancels, {
      callback: (_err, msg) => this.cancelled(msg.subject.slice(msg.subject.lastIndexOf('.') + 1)),
    });
    this.keepAliveTimer = setInterval(
      () => {
        for (const h of this.held.values()) h.msg.working();
      },
      Math.max(1_000, this.d.o.ackWaitMs / 3),
    );
  }

  /** A session has said hello: its queues are pulled from now on. */
  open(s: WorkerSession): void {
    this.sessions.add(s);
    for (const q of s.spec.queues) {
      let p = this.pullers.get(q);
      if (!p) {
        p = new QueuePuller(q, {
          sessions: () => this.sessions,
          open: (queue) => this.consumer(queue),
          take: (m, c) => this.take(q, m, c),
          log: this.d.log,
        });
        this.pullers.set(q, p);
      }
    }
    this.wake(s);
  }

  /**
   * The session is gone (closed, broken, killed): each attempt it held goes back to
   * DISPATCHED for the same attempt, then a last heartbeat tells the scheduler it holds
   * none, then the messages return to the stream, so whoever takes them next may run them.
   */
  async close(s: WorkerSession): Promise<void> {
    if (s.closed) return;
    s.closed = true;
    this.sessions.delete(s);
    // An attempt whose result or hand-back is being stored is left to that (if the store
    // fails, its message stays unacked and is redelivered after ack_wait).
    const attempts = [...s.inHand.values()].filter((h) => !h.ending);
    for (const h of attempts) this.release(h, 'handed_back');
    await Promise.all(
      attempts.map((h) =>
        this.d.events
          .publish(
            this.event(h, JobState.JOB_STATE_DISPATCHED, {
              previousState: JobState.JOB_STATE_RUNNING,
            }),
          )
          .catch(() => undefined),
      ),
    );
    await this.heartbeat(s).catch(() => undefined);
    for (const h of attempts) h.msg.nak();
    if (attempts.length)
      this.d.log.info({ worker_id: s.workerId, attempts: attempts.length }, 'session ended; attempts handed back');
    this.wakeAll();
  }

  /** Stops pulling; every session's attempts are handed back, then its stream ends UNAVAILABLE (connect again). */
  async stop(): Promise<void> {
    for (const s of this.sessions) s.draining = true;
    // Sessions are closed at once, not after the pulls in flight expire (up to 2 s, past
    // the scheduler's patience with a silent worker in small settings); what those pulls
    // still bring finds no session and goes back to the stream.
    const pulling = Promise.all([...this.pullers.values()].map((p) => p.stop()));
    await Promise.all(
      [...this.sessions].map(async (s) => {
        await this.close(s);
        s.end(new UnavailableError('the gateway is shutting down; connect again'));
      }),
    );
    await pulling;
    clearInterval(this.keepAliveTimer);
    this.cancels?.unsubscribe();
  }

  drain(s: WorkerSession): void {
    s.draining = true;
  }

  /** Heartbeats every session to the scheduler; ends sessions silent for three intervals or whose credential lapsed. */
  async beat(intervalMs: number): Promise<void> {
    const now = Date.now();
    await Promise.all(
      [...this.sessions].map(async (s) => {
        if (now - s.lastSeen > intervalMs * 3) {
          s.end(
            new DeadlineExceededError(
              `no message from the worker for ${now - s.lastSeen} ms (heartbeat every ${intervalMs} ms)`,
            ),
          );
          return;
        }
        try {
          await s.recheck();
        } catch (err) {
          s.end(err as Error);
          return;
        }
        await this.heartbeat(s).catch((err: unknown) =>
          this.d.log.warn({ err: errorMessage(err), worker_id: s.workerId }, 'heartbeat failed'),
        );
      }),
    );
    const cutoff = now - 600_000;
    for (const [id, at] of this.recentlyCancelled) if (at < cutoff) this.recentlyCancelled.delete(id);
  }

  heartbeat(s: WorkerSession): Promise<void> {
    const live = !s.closed && !s.draining;
    return this.d.scheduler.heartbeat({
      workerId: s.workerId,
      queues: s.spec.queues,
      jobTypes: s.spec.jobTypes,
      slots: live ? s.spec.slots : 0,
      freeSlots: live ? Math.max(0, s.spec.slots - s.inHand.size) : 0,
      runningJobIds: s.closed ? [] : [...s.inHand.keys()],
      gpuCount: 0,
      version: s.spec.version,
    });
  }

  progress(s: WorkerSession, p: JobProgress): void {
    const h = s.inHand.get(p.jobId);
    if (!h || h.job.attempt !== p.attempt || h.ending || !Number.isFinite(p.percent)) return;
    h.lastProgress = { pct: Math.min(100, Math.max(0, p.percent)), note: p.note.slice(0, 1024) };
    if (h.progressTimer) return;
    h.progressTimer = setTimeout(() => {
      h.progressTimer = undefined;
      const last = h.lastProgress!;
      if (h.ending) return;
      void this.d.events
        .publish(
          this.event(h, JobState.JOB_STATE_RUNNING, { hasProgress: true, progress: last.pct, progressNote: last.note }),
        )
        .catch(() => undefined);
    }, 200);
  }

  /** Stores an attempt's end as the worker reported it, then acks its message. */
  async result(s: WorkerSession, r: JobResult): Promise<ResultAck> {
    const h = this.current(s, r.jobId, r.attempt);
    if (typeof h === 'string') return this.refuse(r.jobId, r.attempt, h);
    if (r.outcome === JobOutcome.JOB_OUTCOME_UNSPECIFIED || r.outcome === JobOutcome.UNRECOGNIZED) {
      return this.refuse(r.jobId, r.attempt, 'result.outcome must be SUCCEEDED, FAILED or CANCELLED');
    }
    h.ending = true;
    const usage = usageOf(r.usage);
    let end: JobEvent;
    if (r.outcome === JobOutcome.JOB_OUTCOME_SUCCEEDED) {
      const out = outputJsonOf(r.outputJson);
      end =
        'json' in out
          ? this.event(h, JobState.JOB_STATE_SUCCEEDED, { outputJson: Buffer.from(out.json), usage })
          : this.event(h, JobState.JOB_STATE_FAILED, {
              error: { code: 'OUTPUT_INVALID', message: out.invalid, retryable: false },
              usage,
            });
    } else if (r.outcome === JobOutcome.JOB_OUTCOME_CANCELLED) {
      end = this.event(h, JobState.JOB_STATE_CANCELLED, {
        error: { code: 'CANCELLED', message: 'cancelled', retryable: false },
        usage,
      });
    } else {
      const e = r.error;
      const code = e && /^[\w.:-]{1,64}$/.test(e.code) ? e.code : 'HANDLER_ERROR';
      const retryAfterMs = e?.retryAfter ? durationToMs(e.retryAfter) : undefined;
      end = this.event(h, JobState.JOB_STATE_FAILED, {
        usage,
        error: {
          code,
          message: (e?.message ?? '').slice(0, 4096),
          retryable: e?.retryable ?? true,
          retryAfter:
            retryAfterMs !== undefined && retryAfterMs > 0
              ? msToDuration(Math.min(retryAfterMs, 86_400_000))
              : undefined,
        },
      });
    }
    try {
      await this.d.events.publish(end);
    } catch (err) {
      h.ending = false;
      return this.refuse(r.jobId, r.attempt, `could not be stored (${errorMessage(err)}); the job will run again`);
    }
    h.msg.ack();
    const status = JobState[end.state]!.replace('JOB_STATE_', '').toLowerCase();
    this.release(h, status);
    this.metrics.attempts.inc({ queue: h.job.queue, status });
    this.metrics.reports.inc({ outcome: 'accepted' });
    return { jobId: r.jobId, attempt: r.attempt, accepted: true, reason: '' };
  }

  /** The worker will not finish the attempt: the same attempt goes to another worker. */
  async handBack(s: WorkerSession, jobId: string, attempt: number): Promise<ResultAck> {
    const h = this.current(s, jobId, attempt);
    if (typeof h === 'string') return this.refuse(jobId, attempt, h);
    h.ending = true;
    s.rememberHandBack(jobId);
    await this.d.events.publish(
      this.event(h, JobState.JOB_STATE_DISPATCHED, { previousState: JobState.JOB_STATE_RUNNING }),
    );
    this.release(h, 'handed_back');
    await this.heartbeat(s).catch(() => undefined);
    h.msg.nak();
    this.metrics.attempts.inc({ queue: h.job.queue, status: 'handed_back' });
    this.metrics.reports.inc({ outcome: 'accepted' });
    return { jobId, attempt, accepted: true, reason: '' };
  }

  private current(s: WorkerSession, jobId: string, attempt: number): HeldAttempt | string {
    const h = s.inHand.get(jobId);
    if (!h || h.job.attempt !== attempt)
      return `attempt ${attempt} of job ${jobId.slice(0, 64)} is not held by this worker`;
    if (h.ending) return `attempt ${attempt} of job ${jobId} has already ended`;
    return h;
  }

  private refuse(jobId: string, attempt: number, reason: string): ResultAck {
    this.metrics.reports.inc({ outcome: 'refused' });
    this.d.log.info({ job_id: jobId.slice(0, 64), attempt, reason }, 'worker report refused');
    return { jobId: jobId.slice(0, 64), attempt, accepted: false, reason };
  }

  /** Forgets an attempt (its message is acked or nak'ed by the caller), ends its span and frees its slot. */
  private release(h: HeldAttempt, outcome: string): void {
    h.finishSpan?.(outcome);
    clearTimeout(h.timeout);
    clearTimeout(h.progressTimer);
    if (this.held.get(h.job.jobId) === h) this.held.delete(h.job.jobId);
    h.session.inHand.delete(h.job.jobId);
    this.wake(h.session);
  }

  private cancelled(jobId: string): void {
    this.recentlyCancelled.set(jobId, Date.now());
    const h = this.held.get(jobId);
    if (h && !h.ending)
      h.session.send({ cancel: { jobId, attempt: h.job.attempt, reason: CancelReason.CANCEL_REASON_CANCELLED } });
  }

  /** Chooses a session for a fetched message, synchronously (so claims stay exact), then starts it. */
  private take(queue: string, m: JsMsg, claims: Claim[]): void {
    let job: DispatchedJob;
    try {
      job = decode(DispatchedJob, m.data);
    } catch (err) {
      this.d.log.error({ err: errorMessage(err), seq: m.seq }, 'undecodable dispatch message; dropping it');
      m.term();
      return;
    }
    if (this.recentlyCancelled.has(job.jobId)) {
      this.metrics.skipped.inc({ reason: 'cancelled' });
      m.ack();
      return;
    }
    // A session that handed this job back never gets it again: its late result for the
    // attempt could not be told from one for the new delivery (fencing is per attempt).
    const fits = (s: WorkerSession) => s.runs(job.type) && !s.handedBack.has(job.jobId);
    const claim = claims.find((c) => c.left > 0 && c.session.accepting && fits(c.session));
    let target: WorkerSession | undefined;
    if (claim) {
      claim.left--;
      target = claim.session; // the claim's reserved slot now belongs to this attempt
    } else {
      target = [...this.sessions].find((s) => s.serves(queue) && fits(s) && s.free > 0);
      if (target) target.reserved++;
    }
    if (!target) {
      const runners = [...this.sessions].filter((s) => s.serves(queue) && s.runs(job.type));
      if (runners.length > 0) {
        // Busy (soon again), or only sessions that handed it back (for another worker).
        m.nak(runners.some(fits) ? BUSY_DELAY_MS : PASS_ON_DELAY_MS);
        return;
      }
      if (m.info.deliveryCount < PASS_ON_DELIVERIES) {
        this.metrics.skipped.inc({ reason: 'no_handler' });
        m.nak(PASS_ON_DELAY_MS);
        return;
      }
      void this.unknownType(job, m);
      return;
    }
    void this.assign(target, job, m);
  }

  private async assign(s: WorkerSession, job: DispatchedJob, m: JsMsg): Promise<void> {
    let current = true;
    try {
      const ageMs = Date.now() - Number(m.info.timestampNanos / 1_000_000);
      if (m.info.deliveryCount > 1 || ageMs > STALE_MS)
        current = await this.d.scheduler.confirm(job.jobId, job.attempt);
    } finally {
      s.reserved--;
    }
    if (!current) {
      this.metrics.skipped.inc({ reason: 'stale' });
      m.ack();
      this.wake(s);
      return;
    }
    if (!s.accepting || this.held.has(job.jobId)) {
      m.nak();
      this.wake(s);
      return;
    }
    const h: HeldAttempt = {
      job,
      msg: m,
      session: s,
      startedAt: new Date(),
      ending: false,
      traceparent: job.traceparent,
    };
    // The attempt's span continues the job's trace (the admission span is its parent), as a NATS worker's does.
    const attrs = {
      'aijob.job_id': job.jobId,
      'aijob.queue': job.queue,
      'aijob.attempt': job.attempt,
      'aijob.type': job.type,
      'aijob.worker_id': s.workerId,
    };
    void inSpan(
      `aijob.execute ${job.type}`,
      job.traceparent,
      attrs,
      (traceparent, span) =>
        new Promise<void>((resolve) => {
          h.traceparent = traceparent || job.traceparent;
          h.finishSpan = (outcome) => {
            span.setAttribute('aijob.outcome', outcome);
            resolve();
          };
        }),
    );
    this.held.set(job.jobId, h);
    s.inHand.set(job.jobId, h);
    const timeoutMs = job.timeout ? durationToMs(job.timeout) : 300_000;
    h.timeout = setTimeout(() => void this.timedOut(h, timeoutMs), timeoutMs + this.d.o.timeoutGraceMs);
    void this.d.events.publish(this.event(h, JobState.JOB_STATE_RUNNING, {})).catch(() => undefined);
    const inputJson = job.inputJson.length > 0 ? job.inputJson : Buffer.from(JSON.stringify(job.input ?? {}));
    s.send({ job: { ...job, input: undefined, inputJson } });
  }

  /** The worker did not report within the job's timeout and a grace: TIMEOUT (retryable), recorded here. */
  private async timedOut(h: HeldAttempt, timeoutMs: number): Promise<void> {
    if (h.ending || h.session.inHand.get(h.job.jobId) !== h) return;
    h.ending = true;
    h.session.send({
      cancel: { jobId: h.job.jobId, attempt: h.job.attempt, reason: CancelReason.CANCEL_REASON_TIMEOUT },
    });
    try {
      await this.d.events.publish(
        this.event(h, JobState.JOB_STATE_FAILED, {
          error: { code: 'TIMEOUT', message: `timed out after ${timeoutMs} ms`, retryable: true },
        }),
      );
      h.msg.ack();
    } catch {
      h.msg.nak();
    }
    this.release(h, 'timeout');
    this.metrics.attempts.inc({ queue: h.job.queue, status: 'timeout' });
  }

  private async unknownType(job: DispatchedJob, m: JsMsg): Promise<void> {
    await this.d.events
      .publish(
        JobEvent.fromPartial({
          jobId: job.jobId,
          attempt: job.attempt,
          state: JobState.JOB_STATE_FAILED,
          at: new Date(),
          queue: job.queue,
          workspaceId: job.workspaceId,
          traceparent: job.traceparent,
          source: 'worker',
          startedAt: new Date(),
          gangId: job.gangId,
          gangSize: job.gangSize,
          error: {
            code: 'UNKNOWN_JOB_TYPE',
            message: `no worker has a handler for job type "${job.type}"`,
            retryable: false,
          },
        }),
      )
      .then(
        () => m.ack(),
        () => m.nak(),
      );
  }

  private event(h: HeldAttempt, state: JobState, extra: Partial<JobEvent>): JobEvent {
    const j = h.job;
    return JobEvent.fromPartial({
      jobId: j.jobId,
      attempt: j.attempt,
      state,
      workerId: h.session.workerId,
      at: new Date(),
      queue: j.queue,
      workspaceId: j.workspaceId,
      traceparent: h.traceparent,
      source: 'worker',
      startedAt: h.startedAt,
      gangId: j.gangId,
      gangSize: j.gangSize,
      ...extra,
    });
  }

  private async consumer(queue: string) {
    const { bus, t } = this.d;
    await ensureStreams(bus.jsm, t, this.d.o.streams, true);
    await ensureDurable(bus.jsm, t.streams.dispatch, t.consumers.dispatch(queue), t.subjects.dispatch(queue), {
      ackWaitMs: this.d.o.ackWaitMs,
      maxAckPending: 100_000,
    });
    return bus.js.consumers.get(t.streams.dispatch, t.consumers.dispatch(queue));
  }

  private wake(s: WorkerSession): void {
    for (const q of s.spec.queues) this.pullers.get(q)?.wake();
  }

  private wakeAll(): void {
    for (const p of this.pullers.values()) p.wake();
  }
}

/** Usage as the job service expects it: whole non-negative token counts, cost left to its price table. */
function usageOf(usage: JobUsage[]): JobUsage[] {
  return usage.slice(0, 100).map((u) => ({
    provider: u.provider.slice(0, 64),
    model: u.model.slice(0, 128),
    promptTokens: Math.max(0, Math.trunc(u.promptTokens || 0)),
    completionTokens: Math.max(0, Math.trunc(u.completionTokens || 0)),
    costUsd: 0,
  }));
}
