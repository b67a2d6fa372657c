import { Heap } from './heap.js';

/** A job waiting for admission. */
export interface PendingJob {
  id: string;
  workspaceId: string;
  queue: string;
  priority: number;
  /** Not before this time (ms since epoch); 0 for now. */
  notBefore: number;
  /** When it started waiting (ms), for the oldest-pending age. */
  since: number;
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
  pending = 0;
  /** Token bucket for the dispatch rate limit. */
  tokens = 0;
  refilledAt = 0;

  constructor(readonly name: string, public settings: QueueSettings) {}

  get free(): number {
    return Math.max(0, this.settings.maxConcurrency - this.inflight.size);
  }

  oldestPendingSince(): number | undefined {
    let oldest: number | undefined;
    for (const heap of this.byWorkspace.values()) {
      for (const j of heap.toArray()) if (oldest === undefined || j.since < oldest) oldest = j.since;
    }
    return oldest;
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
  /** Slots each workspace holds across all queues (fairness is per workspace, not per queue). */
  readonly workspaceInflight = new Map<string, number>();

  constructor(private readonly defaults: () => QueueSettings, private readonly workspaceWeight: (ws: string) => number = () => 1) {}

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
      this.pushReady(q, job);
    }
    return true;
  }

  /** Records an admitted job as holding a slot. */
  addInflight(job: InflightJob): void {
    const prev = this.where.get(job.id);
    if (prev?.at === 'inflight') return;
    if (prev) this.remove(job.id);
    this.queue(job.queue).inflight.set(job.id, job);
    this.where.set(job.id, { at: 'inflight', queue: job.queue });
    this.workspaceInflight.set(job.workspaceId, (this.workspaceInflight.get(job.workspaceId) ?? 0) + 1);
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
    const n = (this.workspaceInflight.get(j.workspaceId) ?? 1) - 1;
    if (n <= 0) this.workspaceInflight.delete(j.workspaceId); else this.workspaceInflight.set(j.workspaceId, n);
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
      while (q.delayed.size > 0 && q.delayed.peek()!.notBefore <= now) this.pushReady(q, q.delayed.pop()!);
      const head = q.delayed.peek();
      if (head && (next === undefined || head.notBefore < next)) next = head.notBefore;
    }
    return next;
  }

  /**
   * Picks up to `n` pending jobs of queue `q`: the highest priority first; among equal
   * priorities, the workspace holding the fewest slots for its weight across all queues
   * (so a huge backlog cannot starve a small one, and splitting a backlog over queues
   * buys nothing); within a workspace, the oldest. The picked jobs leave pending.
   */
  select(q: QueueState, n: number, fits: (gangWidth: number) => Fit = () => 'now'): PendingJob[] {
    const picked: PendingJob[] = [];
    const extra = new Map<string, number>();
    const blocked = new Set<string>();
    const setAside: PendingJob[] = [];
    let slots = n;
    while (slots > 0) {
      let best: { ws: string; head: PendingJob; load: number } | undefined;
      for (const [ws, heap] of q.byWorkspace) {
        if (blocked.has(ws)) continue;
        const head = heap.peek()!;
        const load = ((this.workspaceInflight.get(ws) ?? 0) + (extra.get(ws) ?? 0)) / Math.max(1, this.workspaceWeight(ws));
        if (!best || head.priority > best.head.priority ||
          (head.priority === best.head.priority && (load < best.load || (load === best.load && head.id < best.head.id)))) {
          best = { ws, head, load };
        }
      }
      if (!best) break;
      const w = width(best.head);
      const heap = q.byWorkspace.get(best.ws)!;
      // A gang starts only when all its members can: all or nothing, never partial. While
      // the workers could hold it, it keeps its place (slots drain towards it); while they
      // could not even when idle, the jobs behind it go first.
      const fit = best.head.members ? (w > q.settings.maxConcurrency ? 'never' : fits(w)) : 'now';
      if (fit === 'never') {
        setAside.push(heap.pop()!);
        if (heap.size === 0) q.byWorkspace.delete(best.ws);
        continue;
      }
      if (w > slots || fit === 'later') { blocked.add(best.ws); continue; }
      picked.push(heap.pop()!);
      if (heap.size === 0) q.byWorkspace.delete(best.ws);
      q.pending -= w;
      slots -= w;
      for (const id of best.head.members ?? [best.head.id]) this.where.delete(id);
      extra.set(best.ws, (extra.get(best.ws) ?? 0) + w);
    }
    for (const j of setAside) {
      let heap = q.byWorkspace.get(j.workspaceId);
      if (!heap) q.byWorkspace.set(j.workspaceId, (heap = new Heap(byPriority)));
      heap.push(j);
    }
    return picked;
  }

  /** Jobs waiting (ready or delayed) in each queue. */
  depth(): Map<string, number> {
    const out = new Map<string, number>();
    for (const q of this.queues.values()) {
      let delayed = 0;
      for (const j of q.delayed.toArray()) delayed += width(j);
      out.set(q.name, q.pending + delayed);
    }
    return out;
  }

  get totalPending(): number {
    let n = 0;
    for (const d of this.depth().values()) n += d;
    return n;
  }

  clear(): void {
    this.queues.clear();
    this.where.clear();
    this.workspaceInflight.clear();
  }

  private pushReady(q: QueueState, job: PendingJob): void {
    let heap = q.byWorkspace.get(job.workspaceId);
    if (!heap) q.byWorkspace.set(job.workspaceId, (heap = new Heap(byPriority)));
    heap.push(job);
    q.pending += width(job);
    for (const id of job.members ?? [job.id]) this.where.set(id, { at: 'pending', queue: q.name });
  }
}
