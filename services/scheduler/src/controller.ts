import type { JsMsg } from '@nats-io/jetstream';
import { JobEvents, JobsSubmitted, JobState } from '@aijob/contracts';
import { consumeBatches, decode, ensureDurable, ensureStreams, type Bus, type StreamOptions, type Topology } from '@aijob/bus';
import { errorMessage, type Logger } from '@aijob/core';
import { gauge } from '@aijob/telemetry';
import { forEachActiveJob, requeueAllDispatched, type ActiveJob, type Store } from '@aijob/store';
import { Admission } from './admission.js';
import type { Dispatcher } from './dispatcher.js';
import { GangAssembly } from './gangs.js';
import type { Leadership } from './leader-election.js';
import type { QueueRepository } from './queue-repository.js';
import { Reconciler, type ReconcilerOptions } from './reconciler.js';
import { SchedulerState, type PendingJob } from './scheduler-state.js';
import { dispatchMessages, streamIdentities } from './stream-inspection.js';
import type { WorkerRegistry } from './worker-registry.js';

export interface ControllerDeps {
  store: Store;
  bus: Bus;
  topology: Topology;
  streams: StreamOptions;
  dispatcher: Dispatcher;
  queues: QueueRepository;
  registry: WorkerRegistry;
  events: import('@aijob/bus').EventPublisher;
  log: Logger;
  reconcileIntervalMs: number;
  reconcile: ReconcilerOptions;
}

/**
 * The scheduler's control loop, run by the elected leader only: rebuilds its view of
 * every non-terminal job from Postgres, learns of new jobs and ended attempts from
 * JetStream, admits jobs (admission.ts) and heals drift (reconciler.ts). When NATS
 * loses its streams, the term starts over from Postgres.
 */
export class Controller {
  readonly state: SchedulerState;
  private readonly gangs = new GangAssembly();
  private readonly admission: Admission;
  private readonly reconciler: Reconciler;
  private leading: { epoch: number; signal: AbortSignal } | undefined;
  private previous: Promise<void> = Promise.resolve();
  private streamIds = new Map<string, string>();

  constructor(private readonly d: ControllerDeps) {
    this.state = new SchedulerState(() => d.queues.defaults());
    this.admission = new Admission({
      state: this.state, dispatcher: d.dispatcher, registry: d.registry, log: d.log,
      heartbeatIntervalMs: d.reconcile.heartbeatIntervalMs, epoch: () => this.leading?.epoch,
    });
    this.reconciler = new Reconciler({
      store: d.store, state: this.state, gangs: this.gangs, registry: d.registry, events: d.events, log: d.log,
      track: (r, now) => this.track(r, now), dispatchMessages: () => dispatchMessages(d.bus, d.topology), o: d.reconcile,
    });
    const state = this.state;
    const leading = () => this.leading !== undefined;
    // Depth is what is ready to run and waits (paused queues included: their backlog is real);
    // jobs waiting for their run_at or retry are apart, so a job due tomorrow is no backlog.
    gauge('aijob_queue_depth', 'Jobs ready to run and waiting for admission, per queue.', ['queue'], function () {
      this.reset();
      if (leading()) for (const q of state.queues.values()) this.set({ queue: q.name }, q.pending);
    });
    gauge('aijob_queue_delayed', 'Jobs waiting for their run_at or retry time, per queue.', ['queue'], function () {
      this.reset();
      if (leading()) for (const [q, n] of state.delayedDepth()) this.set({ queue: q }, n);
    });
    gauge('aijob_queue_paused', '1 for a paused queue (it starts no jobs), else 0.', ['queue'], function () {
      this.reset();
      if (leading()) for (const q of state.queues.values()) this.set({ queue: q.name }, q.settings.paused ? 1 : 0);
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
    const { topology: t, bus, log } = this.d;
    while (!signal.aborted) {
      const started = Date.now();
      this.state.clear();
      this.gangs.clear();
      await this.d.queues.load(this.state);
      this.streamIds = await streamIdentities(this.d.bus, this.d.topology);
      const rebuilt = await this.rebuild();
      if (signal.aborted) return;
      this.leading = { epoch, signal };
      log.info({ epoch, jobs: rebuilt, ms: Date.now() - started }, 'leading: state rebuilt from Postgres');

      const opts = { maxBatch: 5_000, pullAhead: 10_000, retryDelayMs: 1_000, log };
      const submitted = consumeBatches(async () => {
        await this.ensureConsumers();
        return bus.js.consumers.get(t.streams.jobs, t.consumers.schedulerSubmitted);
      }, (m) => this.onSubmitted(m), opts);
      const events = consumeBatches(async () => {
        await this.ensureConsumers();
        return bus.js.consumers.get(t.streams.events, t.consumers.schedulerEvents);
      }, (m) => this.onEvents(m), opts);
      const lost = new AbortController();
      const reconcile = setInterval(() => void this.tick(lost), this.d.reconcileIntervalMs);
      const settings = setInterval(() => void this.d.queues.load(this.state).then(() => this.admission.kick(), () => undefined), 2_000);
      this.admission.kick();

      await new Promise<void>((resolve) => {
        signal.addEventListener('abort', () => resolve(), { once: true });
        lost.signal.addEventListener('abort', () => resolve(), { once: true });
      });
      clearInterval(reconcile);
      clearInterval(settings);
      this.admission.stop();
      this.leading = undefined;
      await Promise.all([submitted.stop(), events.stop()]);
      this.state.clear();
      if (!lost.signal.aborted) break;
      log.warn({ epoch }, 'NATS lost its streams: recreating them and rebuilding from Postgres');
      await this.recoverStreams();
    }
    log.info({ epoch }, 'stopped leading');
  }

  private async tick(lost: AbortController): Promise<void> {
    if (!this.leading) return;
    if (await this.streamsLost()) { lost.abort(); return; }
    await this.reconciler.pass();
    this.admission.kick();
  }

  /** Loads every non-terminal job: QUEUED/RETRY_WAIT wait, DISPATCHED/RUNNING hold slots. */
  private async rebuild(): Promise<number> {
    let n = 0;
    const now = Date.now();
    await forEachActiveJob(this.d.store.sql, 5_000, (rows) => {
      for (const r of rows) this.track(r, now);
      n += rows.length;
    });
    return n;
  }

  private track(r: ActiveJob, now: number): void {
    if (r.state === 'DISPATCHED' || r.state === 'RUNNING') {
      this.state.addInflight({ id: r.id, workspaceId: r.workspaceId, queue: r.queue, attempt: r.attempt, since: r.updatedAt.getTime(), dispatchSeq: 0 });
      return;
    }
    const notBefore = (r.state === 'RETRY_WAIT' ? r.nextAttemptAt : r.runAt)?.getTime() ?? 0;
    this.wait({ id: r.id, workspaceId: r.workspaceId, queue: r.queue, priority: r.priority, notBefore }, r.gangId, r.gangSize, now);
  }

  /** A job starts waiting; gang members wait together once all have arrived. */
  private wait(job: PendingJob, gangId: string | null | undefined, gangSize: number, now: number): void {
    if (gangId && gangSize > 1) {
      if (this.state.where.has(job.id)) return;
      const gang = this.gangs.add(gangId, gangSize, job, now);
      if (gang) this.state.addPending(gang, now);
      return;
    }
    this.state.addPending(job, now);
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
        this.wait({ id: j.jobId, workspaceId: j.workspaceId, queue: j.queue, priority: j.priority,
          notBefore: j.runAt?.getTime() ?? 0 }, j.gangId, j.gangSize, now);
      }
    }
    if (newQueues.size > 0) {
      // First sight of a queue: create it with the defaults, or take the settings it already has.
      await this.d.queues.ensure([...newQueues]);
      await this.d.queues.load(this.state);
    }
    this.admission.kick();
  }

  /** Queue settings changed on some replica: apply them now. */
  async reloadQueues(): Promise<void> {
    if (!this.leading) return;
    await this.d.queues.load(this.state);
    this.admission.kick();
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
            this.wait({ id: e.jobId, workspaceId: e.workspaceId, queue: e.queue, priority: e.priority,
              notBefore: e.nextAttemptAt?.getTime() ?? now }, e.gangId, e.gangSize, now);
            break;
          case JobState.JOB_STATE_CANCELLED:
            // A worker's: its attempt ended. Otherwise CancelJob's or ClearQueue's announcement:
            // a job that was not running is forgotten now; a running one when its worker stops.
            if (e.source === 'worker') this.state.release(e.jobId, e.attempt);
            else if (e.previousState !== JobState.JOB_STATE_RUNNING) await this.dropCancelled(e.jobId);
            break;
          default:
            break;
        }
      }
    }
    this.admission.kick();
  }

  /** A cancelled job that was not running: forget it, and take back its dispatch message. */
  private async dropCancelled(id: string): Promise<void> {
    const w = this.state.where.get(id);
    const seq = w?.at === 'inflight' ? this.state.queue(w.queue).inflight.get(id)?.dispatchSeq : 0;
    this.state.remove(id);
    if (seq) await this.d.bus.jsm.streams.deleteMessage(this.d.topology.streams.dispatch, seq, false).catch(() => false);
  }

  /** The streams and the scheduler's durables, created if missing (idempotent). */
  async ensureConsumers(): Promise<void> {
    const { bus, topology: t } = this.d;
    await ensureStreams(bus.jsm, t, this.d.streams);
    const durable = { ackWaitMs: 30_000, maxAckPending: 50_000 };
    await ensureDurable(bus.jsm, t.streams.jobs, t.consumers.schedulerSubmitted, t.subjects.submitted, durable);
    await ensureDurable(bus.jsm, t.streams.events, t.consumers.schedulerEvents, t.subjects.allEvents, durable);
  }

  /** Whether any stream vanished or was recreated (its data is gone) since the term began. */
  private async streamsLost(): Promise<boolean> {
    const now = await streamIdentities(this.d.bus, this.d.topology);
    for (const [name, id] of this.streamIds) if (now.get(name) !== id) return true;
    return false;
  }

  /**
   * After NATS lost its data: streams and durables again, and every DISPATCHED job
   * back to QUEUED (its message is gone); the next term rebuilds the rest from Postgres.
   */
  private async recoverStreams(): Promise<void> {
    await this.ensureConsumers();
    const requeued = await requeueAllDispatched(this.d.store.sql);
    this.d.log.warn({ requeued }, 'dispatched jobs queued again after stream loss');
  }
}
