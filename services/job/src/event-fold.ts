import { JobState, type JobEvent, type JobUsage } from '@aijob/contracts';
import type { AttemptReport } from '@aijob/store';

/** What a batch of events does to one job's current attempt, folded into one report. */
export interface JobUpdate extends AttemptReport {
  /** Model usage the attempt reported with its end. */
  usage: JobUsage[];
  /** The events folded in, in arrival order (for the job's history). */
  events: JobEvent[];
}

const ends: Partial<Record<JobState, JobUpdate['state']>> = {
  [JobState.JOB_STATE_SUCCEEDED]: 'SUCCEEDED',
  [JobState.JOB_STATE_FAILED]: 'FAILED',
  [JobState.JOB_STATE_CANCELLED]: 'CANCELLED',
};

/** The output of a SUCCEEDED event as JSON text of an object, or null when it is not one. */
function outputJson(e: JobEvent): string | null {
  if (e.outputJson.length === 0) return JSON.stringify(e.output ?? {});
  const text = Buffer.from(e.outputJson.buffer, e.outputJson.byteOffset, e.outputJson.byteLength).toString('utf8');
  try {
    const value: unknown = JSON.parse(text);
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? text : null;
  } catch {
    return null;
  }
}

/**
 * Folds worker (and scheduler: lost workers, timeouts) events into at most one update per job: the newest attempt wins, the
 * first end of an attempt wins, progress keeps its latest value. A worker's DISPATCHED
 * event hands its running attempt back (it stopped); a later event of another worker
 * takes the attempt over. Events that only announce a transition already recorded
 * (DISPATCHED, ClearQueue's CANCELLED and gang placement timeouts from the scheduler,
 * RETRY_WAIT and CANCELLED from this service) update nothing; their jobs are still
 * reported as touched.
 */
export function foldEvents(events: JobEvent[]): { updates: JobUpdate[]; touched: Set<string> } {
  const byJob = new Map<string, JobUpdate>();
  const touched = new Set<string>();
  for (const e of events) {
    touched.add(e.jobId);
    // Announcements of transitions already recorded change nothing: this service's own
    // (RETRY_WAIT, CANCELLED) and the scheduler's, which carry the state the job left
    // (DISPATCHED, ClearQueue's CANCELLED, a gang's placement timeout). The scheduler's
    // reports of lost attempts (FAILED, no previous state) apply like a worker's.
    if (e.source === 'job' || (e.source === 'scheduler' && e.previousState !== JobState.JOB_STATE_UNSPECIFIED)) continue;
    const isRunning = e.state === JobState.JOB_STATE_RUNNING;
    const end = ends[e.state];
    const handBack = e.state === JobState.JOB_STATE_DISPATCHED && e.source === 'worker';
    if (!isRunning && !end && !handBack) continue;
    let u = byJob.get(e.jobId);
    if (u && e.attempt < u.attempt) continue;
    if (!u || e.attempt > u.attempt) {
      u = {
        jobId: e.jobId, attempt: e.attempt, state: 'RUNNING', workerId: e.workerId, at: e.at ?? new Date(),
        startedAt: null, output: null, errorCode: null, errorMessage: null, retryable: false, retryAfterMs: null,
        progress: null, progressNote: null, usage: [], events: [],
      };
      byJob.set(e.jobId, u);
    }
    if (handBack) {
      // Only the worker holding the attempt can hand it back.
      if (u.state === 'RUNNING' && (u.workerId === '' || u.workerId === e.workerId)) {
        Object.assign(u, { state: 'DISPATCHED', workerId: e.workerId, at: e.at ?? new Date(), startedAt: null, events: [e] });
      }
      continue;
    }
    if (u.state === 'DISPATCHED') {
      // Handed back earlier in this batch: another worker's event takes the attempt over.
      if (e.workerId === u.workerId) continue;
      Object.assign(u, { state: 'RUNNING', events: [] });
    }
    if (u.state !== 'RUNNING') continue; // the attempt already ended in this batch
    u.events.push(e);
    if (e.workerId) u.workerId = e.workerId;
    if (isRunning) {
      u.startedAt ??= e.startedAt ?? e.at ?? null;
      if (e.hasProgress) { u.progress = e.progress; u.progressNote = e.progressNote; }
      continue;
    }
    u.state = end!;
    u.at = e.at ?? new Date();
    u.usage = e.usage;
    u.startedAt ??= e.startedAt ?? null;
    if (end === 'SUCCEEDED') {
      u.output = outputJson(e);
      if (u.output === null) {
        // Not a JSON object (no worker of ours sends that): the attempt fails, permanently.
        Object.assign(u, { state: 'FAILED', errorCode: 'OUTPUT_INVALID', errorMessage: 'output is not a JSON object', retryable: false });
      }
    }
    if (end === 'FAILED' || end === 'CANCELLED') {
      u.errorCode = e.error?.code || (end === 'CANCELLED' ? 'CANCELLED' : 'UNKNOWN');
      u.errorMessage = e.error?.message ?? '';
      u.retryable = end === 'FAILED' && (e.error?.retryable ?? false);
      const ra = e.error?.retryAfter;
      u.retryAfterMs = ra ? ra.seconds * 1000 + Math.trunc(ra.nanos / 1e6) : null;
    }
  }
  return { updates: [...byJob.values()], touched };
}
