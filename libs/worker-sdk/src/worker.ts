import { hostname } from 'node:os';
import type { Consumer, JsMsg } from '@nats-io/jetstream';
import { DispatchedJob, type JobEvent } from '@aijob/contracts';
import {
  connectBus, decode, ensureDurable, ensureStreams, EventPublisher, topology, type Bus, type Topology,
} from '@aijob/bus';
import { createLogger, errorMessage, type Logger } from '@aijob/core';
import { counter, histogram, latencyBuckets, durationBuckets } from '@aijob/telemetry';
import { Execution } from './execution.js';
import { SchedulerLink } from './scheduler-link.js';
import { AbortReason, type Handler, type WorkerOptions } from './types.js';

/** Messages older than this are checked with the scheduler before running. */
const STALE_MS = 30_000;
/**
 * A job of a type this worker has no handler for goes back to the stream for a worker
 * that has one (queues can be served by workers of different kinds); only after this
 * many deliveries does it fail as UNKNOWN_JOB_TYPE.
 */
const PASS_ON_DELIVERIES = 20;
const PASS_ON_DELAY_MS = 500;

/**
 * Runs jobs of the types it has handlers for, from the queues it serves. Use it as a
 * library to serve your own job types:
 *
 *   const worker = new Worker({ servers, schedulerAddress, queues: ['embeddings'] });
 *   worker.handle('embed.batch', async (job, ctx) => ({ vectors: await embed(job.input, ctx.signal) }));
 *   await worker.start();
 */
export class Worker {
  readonly id: string;
  private readonly handlers = new Map<string, Handler>();
  private readonly running = new Map<string, Execution>();
  private readonly recentlyCancelled = new Map<string, number>();
  private readonly log: Logger;
  private bus: Bus | undefined;
  private t: Topology | undefined;
  private events: EventPublisher | undefined;
  private scheduler: SchedulerLink | undefined;
  private loops: Promise<void>[] = [];
  private stopping = false;
  private outstanding = 0;
  private wakeLoops: (() => void)[] = [];
  /** One per queue's pull loop: whether its last fetch came back empty. */
  private readonly pullers: { idle: boolean }[] = [];
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private keepAliveTimer: NodeJS.Timeout | undefined;
  /** Attempts stopped at shutdown, their messages released after the last heartbeat. */
  private readonly handedBack: Execution[] = [];
  private readonly concurrency: number;
  private readonly queues: string[];
  private readonly metrics = {
    processed: counter('worker_jobs_processed_total', 'Attempts this worker finished, by outcome.', ['queue', 'type', 'status']),
    duration: histogram('worker_job_duration_seconds', 'Handler run time of finished attempts.', ['queue', 'type', 'status'], durationBuckets),
    dispatch: histogram('aijob_dispatch_latency_seconds',
      'From when an attempt could start (submit accepted, run_at reached, retry due) to its handler starting.', ['queue'], latencyBuckets),
    skipped: counter('worker_dispatches_skipped_total', 'Dispatch messages dropped as stale or cancelled.', ['reason']),
  };

  constructor(private readonly o: WorkerOptions) {
    this.id = o.workerId ?? `${hostname()}-${process.pid}`;
    this.concurrency = o.concurrency ?? 10;
    this.queues = o.queues ?? ['default'];
    this.log = (o.log ?? createLogger('worker')).child({ worker_id: this.id });
  }

  /** Registers the handler of a job type (before start). */
  handle(type: string, handler: Handler): this {
    this.handlers.set(type, handler);
    return this;
  }

  get jobTypes(): string[] {
    return [...this.handlers.keys()];
  }

  /** Readiness probe: NATS answers. */
  async ping(): Promise<void> {
    if (!this.bus) throw new Error('worker not started');
    await this.bus.ping();
  }

  get busy(): number {
    return this.running.size;
  }

  async start(): Promise<void> {
    const bus = (this.bus = await connectBus({ servers: this.o.servers, name: `aijob-worker-${this.id}`, log: this.log }));
    const t = (this.t = topology(this.o.namespace ?? 'aijob'));
    await ensureStreams(bus.jsm, t, this.streamDefaults, true);
    this.events = new EventPublisher(bus.js, t, this.log);
    this.scheduler = new SchedulerLink(this.o.schedulerAddress, {
      internalToken: this.o.internalToken, intervalMs: this.o.heartbeatIntervalMs ?? 2_000,
    });
    bus.nc.subscribe(t.subjects.allCancels, {
      callback: (_err, msg) => {
        const id = msg.subject.slice(msg.subject.lastIndexOf('.') + 1);
        this.recentlyCancelled.set(id, Date.now());
        this.running.get(id)?.cancel('cancelled', 'cancelled by request');
      },
    });
    for (const queue of this.queues) {
      const open = async () => {
        await ensureStreams(bus.jsm, t, this.streamDefaults, true);
        await ensureDurable(bus.jsm, t.streams.dispatch, t.consumers.dispatch(queue), t.subjects.dispatch(queue), {
          ackWaitMs: this.ackWaitMs, maxAckPending: 100_000,
        });
        return bus.js.consumers.get(t.streams.dispatch, t.consumers.dispatch(queue));
      };
      this.loops.push(this.pull(await open(), open));
    }
    // One timer keeps every running attempt's message alive (in-progress acks at a third of ack_wait).
    this.keepAliveTimer = setInterval(() => {
      for (const e of this.running.values()) e.keepAlive();
    }, Math.max(1_000, this.ackWaitMs / 3));
    await this.heartbeat();
    this.log.info({ queues: this.queues, concurrency: this.concurrency, types: this.jobTypes }, 'worker started');
  }

  /**
   * Graceful stop: no more pulling; jobs in hand may finish within `graceMs`, the rest
   * are aborted and handed back (their messages redelivered to another worker, the same
   * attempt, none counted); nothing is lost.
   */
  async stop(graceMs = 10_000): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    for (const wake of this.wakeLoops.splice(0)) wake();
    const deadline = Date.now() + graceMs;
    while (this.running.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    for (const e of this.running.values()) e.cancel('shutdown', 'worker stopping');
    while (this.running.size > 0) await new Promise((r) => setTimeout(r, 20));
    await Promise.all(this.loops);
    if (this.heartbeatTimer) clearTimeout(this.heartbeatTimer);
    clearInterval(this.keepAliveTimer);
    // The last heartbeat lists none of the handed-back jobs, so whichever worker gets their
    // messages next may run them (the scheduler confirms nobody holds them).
    await this.sendHeartbeat().catch(() => undefined);
    for (const e of this.handedBack.splice(0)) e.release();
    await this.bus?.nc.flush().catch(() => undefined);
    await this.events?.close();
    this.scheduler?.close();
    await this.bus?.close();
    this.log.info('worker stopped');
  }

  /** Stream settings for a worker that finds no streams yet; the job service and scheduler own them. */
  private get streamDefaults() {
    return { replicas: this.o.replicas ?? 1, maxAgeMs: 3_600_000, maxBytes: this.o.streamMaxBytes };
  }

  private get ackWaitMs(): number {
    return this.o.ackWaitMs ?? 30_000;
  }

  private get free(): number {
    return this.concurrency - this.running.size - this.outstanding;
  }

  /**
   * Pulls only as many messages as there are free slots, so no job waits in a worker's
   * buffer. Serving several queues, each loop claims a share of the free slots, and a
   * queue that came back empty claims one until it has work again: an idle queue's pull
   * (held up to its 2 s expiry) never keeps slots from the queues that have jobs.
   */
  private async pull(first: Consumer, open: () => Promise<Consumer>): Promise<void> {
    let consumer: Consumer | undefined = first;
    const me = { idle: false };
    this.pullers.push(me);
    while (!this.stopping) {
      if (this.free <= 0) {
        await new Promise<void>((resolve) => this.wakeLoops.push(resolve));
        continue;
      }
      const busy = this.pullers.filter((p) => !p.idle).length || 1;
      const share = this.pullers.length === 1 ? this.free : me.idle ? 1 : Math.ceil(this.free / busy);
      const want = Math.min(this.free, share, 256);
      this.outstanding += want;
      let got = 0;
      try {
        consumer ??= await open();
        const batch = await consumer.fetch({ max_messages: want, expires: 2_000 });
        for await (const m of batch) {
          got++;
          this.outstanding--;
          if (this.stopping) { m.nak(); continue; }
          void this.take(m);
        }
      } catch (err) {
        if (!this.stopping) {
          // The stream or durable may be gone (NATS lost its data): open (recreate) it again.
          this.log.warn({ err: errorMessage(err) }, 'fetch failed; reopening the consumer');
          consumer = undefined;
          await new Promise((r) => setTimeout(r, 500));
        }
      } finally {
        this.outstanding -= want - got;
        me.idle = got === 0;
        // Slots claimed but not filled are free again: let the other queues' loops have them.
        if (got < want) this.wake();
      }
    }
  }

  private wake(): void {
    for (const w of this.wakeLoops.splice(0)) w();
  }

  private async take(m: JsMsg): Promise<void> {
    let job: DispatchedJob;
    try {
      job = decode(DispatchedJob, m.data);
    } catch (err) {
      this.log.error({ err: errorMessage(err), seq: m.seq }, 'undecodable dispatch message; dropping it');
      m.term();
      return;
    }
    if (this.recentlyCancelled.has(job.jobId)) {
      this.metrics.skipped.inc({ reason: 'cancelled' });
      m.ack();
      return;
    }
    if (!this.handlers.has(job.type) && m.info.deliveryCount < PASS_ON_DELIVERIES) {
      this.metrics.skipped.inc({ reason: 'no_handler' });
      m.nak(PASS_ON_DELAY_MS);
      return;
    }
    const placeholder = { cancel() {}, keepAlive() {} } as unknown as Execution;
    this.running.set(job.jobId, placeholder);
    try {
      const ageMs = Date.now() - Number(m.info.timestampNanos / 1_000_000);
      if ((m.info.deliveryCount > 1 || ageMs > STALE_MS) && !(await this.scheduler!.confirm(job.jobId, job.attempt))) {
        this.metrics.skipped.inc({ reason: 'stale' });
        m.ack();
        return;
      }
      const exec = new Execution(job, m, { workerId: this.id, log: this.log, emit: (e) => this.emit(e) });
      this.running.set(job.jobId, exec);
      const readyAt = job.readyAt ?? job.createdAt;
      if (readyAt) this.metrics.dispatch.observe({ queue: job.queue }, Math.max(0, Date.now() - readyAt.getTime()) / 1000);
      const outcome = await exec.run(this.handlers.get(job.type));
      if (outcome.kind === 'handed_back') this.handedBack.push(exec);
      const status = outcome.kind;
      this.metrics.processed.inc({ queue: job.queue, type: job.type, status });
      this.metrics.duration.observe({ queue: job.queue, type: job.type, status }, (Date.now() - exec.startedAt.getTime()) / 1000);
    } catch (err) {
      // The end event could not be stored: leave the message unacked for redelivery.
      this.log.error({ err: errorMessage(err), job_id: job.jobId }, 'attempt could not be recorded');
    } finally {
      this.running.delete(job.jobId);
      this.wake();
    }
  }

  private emit(e: JobEvent): Promise<void> {
    return this.events!.publish(e);
  }

  private async heartbeat(): Promise<void> {
    const beat = async () => {
      await this.sendHeartbeat().catch((err: unknown) => this.log.warn({ err: errorMessage(err) }, 'heartbeat failed'));
      const cutoff = Date.now() - 600_000;
      for (const [id, at] of this.recentlyCancelled) if (at < cutoff) this.recentlyCancelled.delete(id);
      if (!this.stopping) this.heartbeatTimer = setTimeout(() => void beat(), this.scheduler!.intervalMs);
    };
    await beat();
  }

  private async sendHeartbeat(): Promise<void> {
    const gpu = (await this.o.gpu?.().catch(() => undefined)) ?? { count: 0 };
    await this.scheduler!.heartbeat({
      workerId: this.id, queues: this.queues, jobTypes: this.jobTypes, slots: this.stopping ? 0 : this.concurrency,
      freeSlots: this.stopping ? 0 : Math.max(0, this.concurrency - this.running.size),
      runningJobIds: [...this.running.keys()], gpuCount: gpu.count, gpuUtilization: gpu.utilization, version: '0.1.0',
    });
  }
}

export { AbortReason };
