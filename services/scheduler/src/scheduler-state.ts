import { Heap } from './heap.js';

/** A job waiting for admission. */
export interface PendingJob {
  id: string;
  workspaceId: string;
  queue: string;
  priority: number;
  /** Not before this time (ms since epoch); 0 for now. */
  notBefore: number;
  /**
   * When it became ready for admission (ms): `run_at` or its retry reached, or this
   * leader's rebuild. A gang's placement timeout counts from here. Set by the state.
   */
  readyAt?: number;
  /** A gang: every member's id (this entry stands for all of them; `id` is the first). */
  members?: string[];
  gangId?: string;
}

/** Whether a gang can start: now, once busy slots free up, or not with the workers there are. */
export type Fit = 'now' | 'later' | 'never';

/** Slots a pending entry needs at once. */
export const width = (j: PendingJob) => j.members?.length ?? 1;

/** A job admitted and not yet ended: it holds a slot of its queue. */
export interface InflightJob {
  id: string;
  workspaceId: string;
  queue: string;
  attempt: number;
  since: number;
  dispatchSeq: number;
}

export interface QueueSettings {
  maxConcurrency: number;
  ratePerSecond: number;
  weight: number;
  paused: boolean;
}

/** Highest priority first, then the oldest (UUID v7 ids sort by creation). */
const byPriority = (a: PendingJob, b: PendingJob) => a.priority > b.priority || (a.priority === b.priority && a.id < b.id);
const byTime = (a: PendingJob, b: PendingJob) => a.notBefore < b.notBefore;

export class QueueState {
  readonly byWorkspace = new Map<string, Heap<PendingJob>>();
  readonly delayed = new Heap<PendingJob>(byTime);
  readonly inflight = new Map<string, InflightJob>();
  /** Slots each workspace holds in this queue. */
  readonly wsInflight = new Map<string, number>();
  pending = 0;
  /** Token bucket for the dispatch rate limit. */
  tokens = 0;
  refilledAt = 0;

  constructor(readonly name: string, public settings: QueueSettings) {}

  get free(): number {
    return Math.max(0, this.settings.maxConcurrency - this.inflight.size);
  }

  /** The weight as a divisor: at least 1. */
  get weight(): number {
    return Math.max(1, this.settings.weight);
  }
}

/**
 * The scheduler leader's view of all non-terminal jobs: pending per queue and
 * workspace, delayed ones by time, and in-flight ones holding slots. Pure data and
 * selection; no I/O. Rebuilt from Postgres whenever a replica becomes leader.
 */
export class SchedulerState {
  readonly queues = new Map<string, QueueState>();
  /** Where each known job is, and in which queue. */
  readonly where = new Map<string, { at: 'pending' | 'delayed' | 'inflight'; queue: string }>();
  constructor(private readonly defaults: () => QueueSettings, readonly workspaceWeight: (ws: string) => number = () => 1) {}

  queue(name: string): QueueState {
    let q = this.queues.get(name);
    if (!q) this.queues.set(name, (q = new QueueState(name, this.defaults())));
    return q;
  }

  /** Adds a job that waits for admission; a job already known is left as it is. */
  addPending(job: PendingJob, now: number): boolean {
    const ids = job.members ?? [job.id];
    if (ids.some((id) => this.where.has(id))) return false;
    const q = this.queue(job.queue);
    if (job.notBefore > now) {
      q.delayed.push(job);
      for (const id of ids) this.where.set(id, { at: 'delayed', queue: q.name });
    } else {
      this.pushReady(q, job, now);
    }
    return true;
  }

  /** Records an admitted job as holding a slot. */
  addInflight(job: InflightJob): void {
    const prev = this.where.get(job.id);
    if (prev?.at === 'inflight') return;
    if (prev) this.remove(job.id);
    const q = this.queue(job.queue);
    q.inflight.set(job.id, job);
    q.wsInflight.set(job.workspaceId, (q.wsInflight.get(job.workspaceId) ?? 0) + 1);
    this.where.set(job.id, { at: 'inflight', queue: job.queue });
  }

  /** Frees the slot of `id` when it is in flight at `attempt` (any attempt when omitted). */
  release(id: string, attempt?: number): InflightJob | undefined {
    const w = this.where.get(id);
    if (w?.at !== 'inflight') return undefined;
    const q = this.queue(w.queue);
    const j = q.inflight.get(id)!;
    if (attempt !== undefined && j.attempt !== attempt) return undefined;
    q.inflight.delete(id);
    this.where.delete(id);
    const n = (q.wsInflight.get(j.workspaceId) ?? 1) - 1;
    if (n <= 0) q.wsInflight.delete(j.workspaceId); else q.wsInflight.set(j.workspaceId, n);
    return j;
  }

  /** Forgets a job wherever it is (cancelled, or found finished). */
  remove(id: string): void {
    const w = this.where.get(id);
    if (!w) return;
    if (w.at === 'inflight') { this.release(id); return; }
    const q = this.queue(w.queue);
    const holds = (j: PendingJob) => j.id === id || (j.members?.includes(id) ?? false);
    let removed: PendingJob | undefined;
    const capture = (j: PendingJob) => { if (holds(j)) { removed = j; return true; } return false; };
    if (w.at === 'delayed') q.delayed.removeWhere(capture);
    else {
      for (const [ws, heap] of q.byWorkspace) {
        if (heap.removeWhere(capture) > 0) {
          q.pending -= width(removed!);
          if (heap.size === 0) q.byWorkspace.delete(ws);
          break;
        }
      }
    }
    for (const m of removed?.members ?? [id]) this.where.delete(m);
  }

  /** Moves delayed jobs whose time has come to pending; returns the next due time. */
  promoteDue(now: number): number | undefined {
    let next: number | undefined;
    for (const q of this.queues.values()) {
      while (q.delayed.size > 0 && q.delayed.peek()!.notBefore <= now) this.pushReady(q, q.delayed.pop()!, now);
      const head = q.delayed.peek();
      if (head && (next === undefined || head.notBefore < next)) next = head.notBefore;
    }
    return next;
  }

  /** Hands out `q`'s pending jobs one at a time for an admission round (see QueuePicker). */
  picker(q: QueueState, fits: (gangWidth: number) => Fit): QueuePicker {
    return new QueuePicker(this, q, fits);
  }

  /** Jobs waiting (ready or delayed) in each queue. */
  /** Jobs per queue waiting for their run_at or retry time. */
  delayedDepth(): Map<string, number> {
    const out = new Map<string, number>();
    for (const q of this.queues.values()) {
      let delayed = 0;
      for (const j of q.delayed.toArray()) delayed += width(j);
      out.set(q.name, delayed);
    }
    return out;
  }

  clear(): void {
    this.queues.clear();
    this.where.clear();
  }

  private pushReady(q: QueueState, job: PendingJob, now: number): void {
    job.readyAt = now;
    pushHead(q, job);
    q.pending += width(job);
    for (const id of job.members ?? [job.id]) this.where.set(id, { at: 'pending', queue: q.name });
  }
}

function pushHead(q: QueueState, job: PendingJob): void {
  let heap = q.byWorkspace.get(job.workspaceId);
  if (!heap) q.byWorkspace.set(job.workspaceId, (heap = new Heap(byPriority)));
  heap.push(job);
}

/** The job a queue would start next, and its workspace's load at the time. */
export interface Candidate {
  ws: string;
  job: PendingJob;
  load: number;
}

/**
 * One queue's side of an admission round. `peek` names the job the queue would start
 * next: the highest priority first; among equal priorities, the workspace with the
 * lowest load (the caller's measure, shared across the queues of a worker pool); within
 * a workspace, the oldest. A gang goes only when all its members can, never partly:
 * while the workers could hold it, it keeps its workspace's place in the queue (slots
 * drain towards it); while they could not even when idle, the jobs behind it go first.
 */
export class QueuePicker {
  private readonly blocked = new Set<string>();
  private readonly setAside: PendingJob[] = [];

  constructor(private readonly s: SchedulerState, readonly q: QueueState, private readonly fits: (gangWidth: number) => Fit) {}

  peek(load: (ws: string) => number, budget: number): Candidate | undefined {
    const q = this.q;
    for (;;) {
      let best: Candidate | undefined;
      for (const [ws, heap] of q.byWorkspace) {
        if (this.blocked.has(ws)) continue;
        const head = heap.peek()!;
        const l = load(ws) / Math.max(1, this.s.workspaceWeight(ws));
        if (!best || head.priority > best.job.priority ||
          (head.priority === best.job.priority && (l < best.load || (l === best.load && head.id < best.job.id)))) {
          best = { ws, job: head, load: l };
        }
      }
      if (!best) return undefined;
      const w = width(best.job);
      const fit = best.job.members ? (w > q.settings.maxConcurrency ? 'never' : this.fits(w)) : 'now';
      if (fit === 'never') {
        const heap = q.byWorkspace.get(best.ws)!;
        this.setAside.push(heap.pop()!);
        if (heap.size === 0) q.byWorkspace.delete(best.ws);
        continue;
      }
      if (w > budget || fit === 'later') { this.blocked.add(best.ws); continue; }
      return best;
    }
  }

  /** Takes the candidate `peek` just named out of pending. */
  take(c: Candidate): void {
    const heap = this.q.byWorkspace.get(c.ws)!;
    heap.pop();
    if (heap.size === 0) this.q.byWorkspace.delete(c.ws);
    this.q.pending -= width(c.job);
    for (const id of c.job.members ?? [c.job.id]) this.s.where.delete(id);
  }

  /** Ends the round: gangs set aside take their places again. */
  finish(): void {
    for (const j of this.setAside.splice(0)) pushHead(this.q, j);
  }
}
