import { errorMessage, type Logger } from '@aijob/core';
import { counter } from '@aijob/telemetry';
import type { Dispatcher } from './dispatcher.js';
import { width, type Candidate, type Fit, type QueuePicker, type QueueState, type SchedulerState } from './scheduler-state.js';
import type { WorkerInfo, WorkerRegistry } from './worker-registry.js';

const MAX_ROUND = 1_000;

/** Queues that share live workers, and what those workers can take. */
interface Pool {
  queues: QueueState[];
  /** Jobs the pool's workers can take or hold ready, less what is in flight in its queues. */
  room: number;
}

/**
 * One admission round at a time. Queues that share workers form a pool; the pool's
 * capacity (its workers' slots and half as many again) is shared by all its queues, one
 * slot at a time: the next goes to the workspace with the lowest load in the pool — its
 * jobs in flight there, each counted 1/weight of its queue — and among that workspace's
 * queues to the one with the fewest in flight for its weight. Within a queue, priority
 * comes first (QueuePicker). Each queue also stays within its max_concurrency, its dispatch
 * rate and its own workers' capacity. The round's jobs go out in one fenced dispatch.
 */
export class Admission {
  private running = false;
  private again = false;
  private dueTimer: NodeJS.Timeout | undefined;
  private dueAt = 0;
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
    const { pools, queueRoom, serving } = this.pools(now);
    for (const pool of pools) this.fill(pool, queueRoom, serving, now, ids);
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

  /** Hands the pool's room to its queues' pending jobs, slot by slot (see the class comment). */
  private fill(pool: Pool, queueRoom: Map<string, number>, serving: Map<string, WorkerInfo[]>, now: number, ids: string[]): void {
    const load = new Map<string, number>();
    for (const q of pool.queues) for (const [ws, n] of q.wsInflight) load.set(ws, (load.get(ws) ?? 0) + n / q.weight);
    const loadOf = (ws: string) => load.get(ws) ?? 0;
    const open: { q: QueueState; picker: QueuePicker; budget: number }[] = [];
    /** Slots taken this round, per queue. */
    const picked = new Map<string, number>();
    for (const q of pool.queues) {
      if (q.settings.paused || q.pending === 0) continue;
      let budget = Math.min(q.free, MAX_ROUND, queueRoom.get(q.name) ?? 0);
      if (q.settings.ratePerSecond > 0 && budget > 0) budget = Math.min(budget, this.tokens(q, now, budget));
      if (budget <= 0) continue;
      open.push({ q, budget, picker: this.d.state.picker(q, (w) => this.gangFit(q.name, pool, serving, picked, w, now)) });
    }
    const pickers = open.map((o) => o.picker);
    let room = pool.room;
    while (room > 0 && open.length > 0) {
      let best: { o: (typeof open)[number]; c: Candidate; qLoad: number } | undefined;
      for (let i = open.length - 1; i >= 0; i--) {
        const o = open[i]!;
        const c = o.budget > 0 ? o.picker.peek(loadOf, Math.min(o.budget, room)) : undefined;
        if (!c) { open.splice(i, 1); continue; }
        const qLoad = (o.q.inflight.size + width(c.job)) / o.q.weight;
        if (!best || c.load < best.c.load || (c.load === best.c.load &&
          (qLoad < best.qLoad || (qLoad === best.qLoad && c.job.id < best.c.job.id)))) best = { o, c, qLoad };
      }
      if (!best) break;
      const { o, c } = best;
      o.picker.take(c);
      for (const id of c.job.members ?? [c.job.id]) {
        this.d.state.addInflight({ id, workspaceId: c.ws, queue: o.q.name, attempt: -1, since: now, dispatchSeq: 0 });
        ids.push(id);
      }
      const w = width(c.job);
      o.budget -= w;
      room -= w;
      load.set(c.ws, loadOf(c.ws) + w / o.q.weight);
      if (o.q.settings.ratePerSecond > 0) o.q.tokens -= w;
      picked.set(o.q.name, (picked.get(o.q.name) ?? 0) + w);
    }
    for (const p of pickers) p.finish();
    for (const [q, n] of picked) this.note(q, now, n);
  }

  /**
   * Queues joined into pools by the live workers they share. A pool's room is what its
   * workers can take or hold ready — their slots and half as many again — less what is in
   * flight in all its queues; each queue's room likewise counts only its own workers.
   * Admitting only that much keeps the waiting line here, where priority, weights and
   * fairness apply, not in the stream.
   */
  private pools(now: number): { pools: Pool[]; queueRoom: Map<string, number>; serving: Map<string, WorkerInfo[]> } {
    const { state } = this.d;
    const parent = new Map<string, string>();
    const find = (x: string): string => {
      let r = x;
      while (parent.get(r) !== r) r = parent.get(r)!;
      parent.set(x, r);
      return r;
    };
    const serving = new Map<string, WorkerInfo[]>();
    const alive = this.d.registry.alive(now);
    for (const w of alive) {
      const qs = w.queues.filter((n) => state.queues.has(n));
      for (const n of qs) {
        if (!parent.has(n)) parent.set(n, n);
        serving.set(n, [...(serving.get(n) ?? []), w]);
        parent.set(find(n), find(qs[0]!));
      }
    }
    const capacity = (w: WorkerInfo) => Math.ceil(w.slots * 1.5);
    const byRoot = new Map<string, { queues: QueueState[]; workers: Set<WorkerInfo> }>();
    const queueRoom = new Map<string, number>();
    for (const [name, workers] of serving) {
      const q = state.queue(name);
      const root = find(name);
      let g = byRoot.get(root);
      if (!g) byRoot.set(root, (g = { queues: [], workers: new Set() }));
      g.queues.push(q);
      for (const w of workers) g.workers.add(w);
      queueRoom.set(name, Math.max(0, workers.reduce((n, w) => n + capacity(w), 0) - q.inflight.size));
    }
    const pools: Pool[] = [];
    for (const g of byRoot.values()) {
      let room = 0;
      for (const w of g.workers) room += capacity(w);
      for (const q of g.queues) room -= q.inflight.size;
      if (room > 0) pools.push({ queues: g.queues, room });
    }
    return { pools, queueRoom, serving };
  }

  private gangFit(queue: string, pool: Pool, serving: Map<string, WorkerInfo[]>, picked: Map<string, number>, width: number,
    now: number): Fit {
    const workers = serving.get(queue) ?? [];
    // Free slots as the workers last reported them, less what went out since (this round too) to any queue of the pool.
    let free = workers.reduce((n, w) => n + w.freeSlots, 0);
    for (const q of pool.queues) {
      free -= picked.get(q.name) ?? 0;
      for (const r of this.recent.get(q.name) ?? []) if (now - r.at < this.d.heartbeatIntervalMs * 1.5) free -= r.n;
    }
    if (free >= width) return 'now';
    return workers.reduce((n, w) => n + w.slots, 0) >= width ? 'later' : 'never';
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
}
