import type { Consumer, JsMsg } from '@nats-io/jetstream';
import { JobEvents, JobsSubmitted, JobState } from '@aijob/contracts';
import { consumeBatches, decode, type Bus, type Topology } from '@aijob/bus';
import { counter, errorMessage, gauge, type Logger } from '@aijob/platform';
import type { Store } from '@aijob/store';
import type { Dispatcher } from './dispatcher.js';
import type { Leadership } from './leader-election.js';
import type { QueueRepository } from './queue-repository.js';
import { SchedulerState, type QueueState } from './scheduler-state.js';

const MAX_ROUND = 1_000;

interface ActiveRow {
  id: string;
  workspace_id: string;
  queue: string;
  priority: number;
  state: 'QUEUED' | 'DISPATCHED' | 'RUNNING' | 'RETRY_WAIT';
  attempt: number;
  created_at: Date;
  updated_at: Date;
  run_at: Date | null;
  next_attempt_at: Date | null;
}

/**
 * The scheduler's control loop, run by the elected leader only: rebuilds its view of
 * every non-terminal job from Postgres, learns of new jobs and ended attempts from
 * JetStream, admits jobs per queue (priority, per-workspace fairness, concurrency,
 * rate, delays) and reconciles its view with Postgres on a timer.
 */
export class Controller {
  readonly state: SchedulerState;
  private leading: { epoch: number; signal: AbortSignal } | undefined;
  private previous: Promise<void> = Promise.resolve();
  private admitting = false;
  private again = false;
  private dueTimer: NodeJS.Timeout | undefined;
  private readonly metrics = {
    reconciles: counter('controller_reconcile_total', 'Reconciliation passes run by the leader.'),
    reconcileErrors: counter('controller_reconcile_errors_total', 'Reconciliation passes that failed.'),
    admitted: counter('aijob_admitted_total', 'Jobs admitted and dispatched, by queue.', ['queue']),
  };

  constructor(private readonly d: {
    store: Store;
    bus: Bus;
    topology: Topology;
    dispatcher: Dispatcher;
    queues: QueueRepository;
    log: Logger;
    reconcileIntervalMs: number;
  }) {
    this.state = new SchedulerState(() => d.queues.defaults());
    const state = this.state;
    const leading = () => this.leading !== undefined;
    gauge('aijob_queue_depth', 'Jobs waiting for admission (ready or delayed), per queue.', ['queue'], function () {
      this.reset();
      if (leading()) for (const [q, n] of state.depth()) this.set({ queue: q }, n);
    });
    gauge('controller_workqueue_depth', 'Jobs ready for admission now, all queues.', [], function () {
      let n = 0;
      if (leading()) for (const q of state.queues.values()) n += q.pending;
      this.set(n);
    });
  }

  get isLeading(): boolean {
    return this.leading !== undefined;
  }

  /** Called by the election; runs until leadership is lost. */
  onElected(l: Leadership): void {
    this.previous = this.previous.then(() => this.lead(l)).catch((err: unknown) => {
      this.d.log.error({ err }, 'leadership term failed');
    });
  }

  /** Resolves when the current term (if any) has wound down. */
  async stopped(): Promise<void> {
    await this.previous;
  }

  private async lead({ epoch, signal }: Leadership): Promise<void> {
    if (signal.aborted) return;
    const { topology: t, bus, log } = this.d;
    const started = Date.now();
    this.state.clear();
    await this.d.queues.load(this.state);
    const rebuilt = await this.rebuild();
    if (signal.aborted) return;
    this.leading = { epoch, signal };
    log.info({ epoch, jobs: rebuilt, ms: Date.now() - started }, 'leading: state rebuilt from Postgres');

    const opts = { maxBatch: 5_000, pullAhead: 10_000, retryDelayMs: 1_000, log };
    const submitted = consumeBatches(await bus.js.consumers.get(t.streams.jobs, t.consumers.schedulerSubmitted),
      (m) => this.onSubmitted(m), opts);
    const events = consumeBatches(await bus.js.consumers.get(t.streams.events, t.consumers.schedulerEvents),
      (m) => this.onEvents(m), opts);
    const reconcile = setInterval(() => void this.reconcile(), this.d.reconcileIntervalMs);
    const settings = setInterval(() => void this.d.queues.load(this.state).then(() => this.kick(), () => undefined), 2_000);
    this.kick();

    await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
    clearInterval(reconcile);
    clearInterval(settings);
    if (this.dueTimer) clearTimeout(this.dueTimer);
    this.leading = undefined;
    await Promise.all([submitted.stop(), events.stop()]);
    this.state.clear();
    log.info({ epoch }, 'stopped leading');
  }

  /** Loads every non-terminal job: QUEUED/RETRY_WAIT wait, DISPATCHED/RUNNING hold slots. */
  private async rebuild(): Promise<number> {
    let n = 0;
    const now = Date.now();
    await this.d.store.sql<ActiveRow[]>`
      SELECT id, workspace_id, queue, priority, state, attempt, created_at, updated_at, run_at, next_attempt_at
      FROM jobs WHERE state IN ('QUEUED', 'DISPATCHED', 'RUNNING', 'RETRY_WAIT')`.cursor(5_000, (rows) => {
      for (const r of rows) this.track(r, now);
      n += rows.length;
    });
    return n;
  }

  private track(r: ActiveRow, now: number): void {
    if (r.state === 'DISPATCHED' || r.state === 'RUNNING') {
      this.state.addInflight({ id: r.id, workspaceId: r.workspace_id, queue: r.queue, attempt: r.attempt, since: r.updated_at.getTime(), dispatchSeq: 0 });
      return;
    }
    const notBefore = (r.state === 'RETRY_WAIT' ? r.next_attempt_at : r.run_at)?.getTime() ?? 0;
    this.state.addPending({ id: r.id, workspaceId: r.workspace_id, queue: r.queue, priority: r.priority, notBefore, since: r.created_at.getTime() }, now);
  }

  private async onSubmitted(msgs: JsMsg[]): Promise<void> {
    const now = Date.now();
    const newQueues = new Set<string>();
    for (const m of msgs) {
      let batch;
      try { batch = decode(JobsSubmitted, m.data); } catch (err) {
        this.d.log.error({ err: errorMessage(err), seq: m.seq }, 'undecodable submitted message; dropping it');
        continue;
      }
      for (const j of batch.jobs) {
        if (!this.state.queues.has(j.queue)) newQueues.add(j.queue);
        this.state.addPending({
          id: j.jobId, workspaceId: j.workspaceId, queue: j.queue, priority: j.priority,
          notBefore: j.runAt?.getTime() ?? 0, since: j.createdAt?.getTime() ?? now,
        }, now);
      }
    }
    if (newQueues.size > 0) await this.d.queues.ensure([...newQueues]);
    this.kick();
  }

  private async onEvents(msgs: JsMsg[]): Promise<void> {
    const now = Date.now();
    for (const m of msgs) {
      let batch;
      try { batch = decode(JobEvents, m.data); } catch (err) {
        this.d.log.error({ err: errorMessage(err), seq: m.seq }, 'undecodable event message; dropping it');
        continue;
      }
      for (const e of batch.events) {
        switch (e.state) {
          case JobState.JOB_STATE_SUCCEEDED:
          case JobState.JOB_STATE_FAILED:
            this.state.release(e.jobId, e.attempt);
            break;
          case JobState.JOB_STATE_RETRY_WAIT:
            this.state.release(e.jobId, e.attempt);
            this.state.addPending({
              id: e.jobId, workspaceId: e.workspaceId, queue: e.queue, priority: 0,
              notBefore: e.nextAttemptAt?.getTime() ?? now, since: now,
            }, now);
            break;
          case JobState.JOB_STATE_CANCELLED:
            if (e.source !== 'job') this.state.release(e.jobId, e.attempt);
            else if (e.previousState !== JobState.JOB_STATE_RUNNING) await this.dropCancelled(e.jobId);
            break;
          default:
            break;
        }
      }
    }
    this.kick();
  }

  /** A cancelled job that was not running: forget it, and take back its dispatch message. */
  private async dropCancelled(id: string): Promise<void> {
    const w = this.state.where.get(id);
    const seq = w?.at === 'inflight' ? this.state.queue(w.queue).inflight.get(id)?.dispatchSeq : 0;
    this.state.remove(id);
    if (seq) await this.d.bus.jsm.streams.deleteMessage(this.d.topology.streams.dispatch, seq, false).catch(() => false);
  }

  /** Asks for an admission round; rounds never overlap. */
  kick(): void {
    if (!this.leading) return;
    if (this.admitting) { this.again = true; return; }
    this.admitting = true;
    setImmediate(() => void this.admitLoop());
  }

  private async admitLoop(): Promise<void> {
    try {
      do {
        this.again = false;
        await this.admitRound();
      } while (this.again && this.leading);
    } catch (err) {
      this.d.log.error({ err: errorMessage(err) }, 'admission round failed');
      setTimeout(() => this.kick(), 500);
    } finally {
      this.admitting = false;
    }
  }

  private async admitRound(): Promise<void> {
    const lead = this.leading;
    if (!lead) return;
    const now = Date.now();
    const nextDue = this.state.promoteDue(now);
    this.scheduleDue(nextDue);
    const picked: { queue: QueueState; ids: string[] }[] = [];
    for (const q of this.state.queues.values()) {
      if (q.settings.paused || q.pending === 0) continue;
      let n = Math.min(q.free, MAX_ROUND);
      if (q.settings.ratePerSecond > 0) n = Math.min(n, this.takeTokens(q, now, n));
      if (n <= 0) continue;
      const jobs = this.state.select(q, n);
      for (const j of jobs) {
        this.state.addInflight({ id: j.id, workspaceId: j.workspaceId, queue: q.name, attempt: -1, since: now, dispatchSeq: 0 });
      }
      picked.push({ queue: q, ids: jobs.map((j) => j.id) });
    }
    const ids = picked.flatMap((p) => p.ids);
    if (ids.length === 0) return;
    const dispatched = await this.d.dispatcher.dispatch(ids, lead.epoch);
    if (this.leading !== lead) return;
    const done = new Set<string>();
    for (const d of dispatched) {
      done.add(d.id);
      const slot = this.state.queue(d.queue).inflight.get(d.id);
      if (slot) { slot.attempt = d.attempt; slot.dispatchSeq = d.seq; }
      this.metrics.admitted.inc({ queue: d.queue });
    }
    // Not dispatched: cancelled or otherwise moved on since we learned of it.
    for (const id of ids) if (!done.has(id)) this.state.release(id);
    this.again = true;
  }

  private takeTokens(q: QueueState, now: number, want: number): number {
    const rate = q.settings.ratePerSecond;
    const burst = Math.max(1, rate);
    q.tokens = Math.min(burst, q.tokens + ((now - (q.refilledAt || now)) / 1000) * rate);
    q.refilledAt = now;
    const n = Math.min(want, Math.floor(q.tokens));
    q.tokens -= n;
    if (n < want) this.scheduleDue(now + Math.ceil(((1 - (q.tokens % 1)) / rate) * 1000));
    return n;
  }

  private scheduleDue(at: number | undefined): void {
    if (at === undefined) return;
    if (this.dueTimer) clearTimeout(this.dueTimer);
    this.dueTimer = setTimeout(() => this.kick(), Math.max(0, at - Date.now()) + 1);
  }

  /**
   * Makes the in-memory view agree with Postgres: frees slots of attempts that ended
   * without our hearing of it, and picks up RETRY_WAIT jobs whose announcement was lost.
   */
  async reconcile(): Promise<void> {
    if (!this.leading) return;
    this.metrics.reconciles.inc();
    try {
      const inflight: { id: string; attempt: number }[] = [];
      for (const q of this.state.queues.values()) {
        for (const j of q.inflight.values()) if (j.attempt >= 0) inflight.push({ id: j.id, attempt: j.attempt });
      }
      if (inflight.length > 0) {
        const live = await this.d.store.sql<{ id: string; attempt: number }[]>`
          SELECT id, attempt FROM jobs WHERE id = ANY(${inflight.map((j) => j.id)}::uuid[])
            AND state IN ('DISPATCHED', 'RUNNING')`;
        const current = new Set(live.map((r) => `${r.id}:${r.attempt}`));
        for (const j of inflight) if (!current.has(`${j.id}:${j.attempt}`)) this.state.release(j.id, j.attempt);
      }
      const now = Date.now();
      const waiting = await this.d.store.sql<ActiveRow[]>`
        SELECT id, workspace_id, queue, priority, state, attempt, created_at, updated_at, run_at, next_attempt_at
        FROM jobs WHERE state = 'RETRY_WAIT' LIMIT 10000`;
      for (const r of waiting) this.track(r, now);
      this.kick();
    } catch (err) {
      this.metrics.reconcileErrors.inc();
      this.d.log.warn({ err: errorMessage(err) }, 'reconcile pass failed');
    }
  }
}
