import { counter, errorMessage, type Logger } from '@aijob/platform';
import type { Dispatcher } from './dispatcher.js';
import { width, type Fit, type QueueState, type SchedulerState } from './scheduler-state.js';
import type { WorkerRegistry } from './worker-registry.js';

const MAX_ROUND = 1_000;

/**
 * One admission round at a time: for every queue that is not paused, as many jobs as
 * its free concurrency and rate allow, chosen by priority and workspace fairness, go
 * out in one fenced dispatch. A gang goes only when enough worker slots are free for
 * all its members at once.
 */
export class Admission {
  private running = false;
  private again = false;
  private dueTimer: NodeJS.Timeout | undefined;
  /** Jobs dispatched per queue recently, not yet reflected in workers' heartbeats. */
  private readonly recent = new Map<string, { at: number; n: number }[]>();
  private readonly admitted = counter('aijob_admitted_total', 'Jobs admitted and dispatched, by queue.', ['queue']);

  constructor(private readonly d: {
    state: SchedulerState;
    dispatcher: Dispatcher;
    registry: WorkerRegistry;
    log: Logger;
    heartbeatIntervalMs: number;
    /** The current term's epoch, or undefined when not leading. */
    epoch: () => number | undefined;
  }) {}

  /** Asks for a round; rounds never overlap, and one asked for during a round follows it. */
  kick(): void {
    if (this.d.epoch() === undefined) return;
    if (this.running) { this.again = true; return; }
    this.running = true;
    setImmediate(() => void this.loop());
  }

  stop(): void {
    if (this.dueTimer) clearTimeout(this.dueTimer);
    this.recent.clear();
  }

  private async loop(): Promise<void> {
    try {
      do {
        this.again = false;
        await this.round();
      } while (this.again && this.d.epoch() !== undefined);
    } catch (err) {
      this.d.log.error({ err: errorMessage(err) }, 'admission round failed');
      setTimeout(() => this.kick(), 500);
    } finally {
      this.running = false;
    }
  }

  private async round(): Promise<void> {
    const epoch = this.d.epoch();
    if (epoch === undefined) return;
    const { state } = this.d;
    const now = Date.now();
    this.schedule(state.promoteDue(now));
    const ids: string[] = [];
    for (const q of state.queues.values()) {
      if (q.settings.paused || q.pending === 0) continue;
      let n = Math.min(q.free, MAX_ROUND, this.workerCapacityLeft(q, now));
      if (q.settings.ratePerSecond > 0) n = Math.min(n, this.tokens(q, now, n));
      if (n <= 0) continue;
      const picked = state.select(q, n, (w) => this.gangFit(q.name, w, now));
      let count = 0;
      for (const j of picked) {
        for (const id of j.members ?? [j.id]) {
          state.addInflight({ id, workspaceId: j.workspaceId, queue: q.name, attempt: -1, since: now, dispatchSeq: 0 });
          ids.push(id);
        }
        count += width(j);
      }
      if (count > 0) this.note(q.name, now, count);
      if (q.settings.ratePerSecond > 0) q.tokens -= count;
    }
    if (ids.length === 0) return;
    const dispatched = await this.d.dispatcher.dispatch(ids, epoch);
    if (this.d.epoch() !== epoch) return;
    const done = new Set<string>();
    for (const d of dispatched) {
      done.add(d.id);
      const slot = state.queue(d.queue).inflight.get(d.id);
      if (slot) { slot.attempt = d.attempt; slot.dispatchSeq = d.seq; }
      this.admitted.inc({ queue: d.queue });
    }
    // Not dispatched: cancelled or otherwise moved on since we learned of it.
    for (const id of ids) if (!done.has(id)) state.release(id);
    this.again = true;
  }

  /**
   * How many more jobs the queue's live workers can take or hold ready: their slots and
   * half as many again in the stream, less what is in flight. Admitting only that much
   * keeps the waiting line here, where priority and fairness apply, not in the stream.
   */
  private workerCapacityLeft(q: QueueState, now: number): number {
    let slots = 0;
    for (const w of this.d.registry.alive(now)) if (w.queues.includes(q.name)) slots += w.slots;
    return Math.max(0, Math.ceil(slots * 1.5) - q.inflight.size);
  }

  private gangFit(queue: string, width: number, now: number): Fit {
    if (this.workerSlotsFree(queue, now) >= width) return 'now';
    let total = 0;
    for (const w of this.d.registry.alive(now)) if (w.queues.includes(queue)) total += w.slots;
    return total >= width ? 'later' : 'never';
  }

  /** Free worker slots for a queue: what live workers last reported, less what went out since. */
  private workerSlotsFree(queue: string, now: number): number {
    let free = 0;
    for (const w of this.d.registry.alive(now)) if (w.queues.includes(queue)) free += w.freeSlots;
    for (const r of this.recent.get(queue) ?? []) if (now - r.at < this.d.heartbeatIntervalMs * 1.5) free -= r.n;
    return free;
  }

  private note(queue: string, at: number, n: number): void {
    const list = (this.recent.get(queue) ?? []).filter((r) => at - r.at < this.d.heartbeatIntervalMs * 1.5);
    list.push({ at, n });
    this.recent.set(queue, list);
  }

  /** Whole tokens available for the queue's dispatch rate limit (bucket of one second). */
  private tokens(q: QueueState, now: number, want: number): number {
    const rate = q.settings.ratePerSecond;
    q.tokens = Math.min(Math.max(1, rate), q.tokens + ((now - (q.refilledAt || now)) / 1000) * rate);
    q.refilledAt = now;
    const n = Math.min(want, Math.floor(q.tokens));
    if (n < want) this.schedule(now + Math.ceil(((1 - (q.tokens % 1)) / rate) * 1000));
    return n;
  }

  /** Wakes a round at `at`, unless one is already due sooner. */
  private schedule(at: number | undefined): void {
    if (at === undefined) return;
    if (this.dueTimer && this.dueAt <= at && this.dueAt > Date.now()) return;
    if (this.dueTimer) clearTimeout(this.dueTimer);
    this.dueAt = at;
    this.dueTimer = setTimeout(() => { this.dueTimer = undefined; this.kick(); }, Math.max(0, at - Date.now()) + 1);
  }

  private dueAt = 0;
}
