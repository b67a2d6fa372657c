import { JobsSubmitted, type SubmittedJob } from '@aijob/contracts';
import { encode, type Topology } from '@aijob/bus';
import type { JetStreamClient } from '@nats-io/jetstream';
import { Batcher, errorMessage, type Logger } from '@aijob/core';
import { counter } from '@aijob/telemetry';
import {
  jobsByIdempotencyKey, releaseIdempotencyKeys, submitJobs, type JobRow, type JobSubmission, type Store,
} from '@aijob/store';
import type { ValidSubmission } from './validation.js';

/** A validated submission with its identity: ready to be stored. */
export interface NewJob extends ValidSubmission, JobSubmission {
  id: string;
  /** Set on the members of a gang. */
  gangId: string | null;
  workspaceId: string;
  createdBy: string;
  traceparent: string;
  requestId: string;
}

export interface SubmitOutcome {
  row: JobRow;
  deduplicated: boolean;
}

const ANNOUNCE_CHUNK = 2_000;
const submitted = () => counter('aijob_submitted_total', 'Jobs accepted and stored.', ['queue', 'type']);
const publishFailures = () => counter('aijob_submit_publish_failures_total', 'Submitted-job announcements that had to be retried.');

/**
 * Stores submissions by group commit: every request that arrives while a commit is in
 * flight joins the next one, which is a single statement inserting all their jobs and
 * audit rows. Then the batch is announced on `<ns>.jobs.submitted` as one message.
 * A request's jobs are all stored or none are.
 */
export class Submitter {
  private readonly batcher: Batcher<NewJob[], SubmitOutcome[]>;
  private unpublished: SubmittedJob[] = [];
  private readonly retryTimer: NodeJS.Timeout;
  private readonly metrics = { submitted: submitted(), publishFailures: publishFailures() };

  constructor(
    private readonly store: Store,
    private readonly js: JetStreamClient,
    private readonly t: Topology,
    private readonly log: Logger,
    private readonly o: { idempotencyWindowMs: number },
  ) {
    this.batcher = new Batcher((groups) => this.commit(groups), { maxBatch: 64, concurrency: 4 });
    this.retryTimer = setInterval(() => void this.republish(), 1_000).unref();
  }

  submit(jobs: NewJob[]): Promise<SubmitOutcome[]> {
    return this.batcher.add(jobs);
  }

  /** Announces reopened jobs (RetryJob) to the scheduler again. */
  async announceAgain(rows: JobRow[]): Promise<void> {
    if (rows.length === 0) return;
    await this.announce(rows.map((row) => ({
      jobId: row.id, workspaceId: row.workspaceId, queue: row.queue, type: row.type, priority: row.priority,
      createdAt: row.createdAt, runAt: row.runAt ?? undefined, gangSize: row.gangSize, gangId: row.gangId ?? '',
      traceparent: row.traceparent,
    })), `${rows[0]!.id}:reopened:${rows[0]!.updatedAt.getTime()}`);
  }

  async close(): Promise<void> {
    await this.batcher.idle();
    clearInterval(this.retryTimer);
    await this.republish();
  }

  private async commit(groups: NewJob[][]): Promise<SubmitOutcome[][]> {
    const all = groups.flat();
    const created = new Map<string, JobRow>();
    for (const r of await submitJobs(this.store.sql, all)) created.set(r.id, r);
    const duplicates = await this.resolveDuplicates(all.filter((j) => !created.has(j.id)), created);

    const fresh = all.filter((j) => created.has(j.id));
    for (const j of fresh) this.metrics.submitted.inc({ queue: j.queue, type: j.type });
    await this.announce(fresh.map((j) => ({
      jobId: j.id, workspaceId: j.workspaceId, queue: j.queue, type: j.type, priority: j.priority,
      createdAt: created.get(j.id)!.createdAt, runAt: j.runAt ?? undefined, gangSize: j.gangSize, gangId: j.gangId ?? '',
      traceparent: j.traceparent,
    })));

    return groups.map((group) => group.map((j) => {
      const row = created.get(j.id);
      if (row) return { row, deduplicated: false };
      return { row: duplicates.get(`${j.workspaceId}\u0000${j.idempotencyKey}`)!, deduplicated: true };
    }));
  }

  /**
   * Jobs not inserted collided on (workspace, idempotency_key). Inside the window the
   * first job answers; past it, the old job gives up its key and the new one is stored.
   */
  private async resolveDuplicates(dupes: NewJob[], created: Map<string, JobRow>): Promise<Map<string, JobRow>> {
    const found = new Map<string, JobRow>();
    if (dupes.length === 0) return found;
    const rows = await jobsByIdempotencyKey(this.store.sql, dupes.map((j) => ({ workspaceId: j.workspaceId, key: j.idempotencyKey! })));
    const expired: NewJob[] = [];
    const cutoff = Date.now() - this.o.idempotencyWindowMs;
    for (const r of rows) found.set(`${r.workspaceId}\u0000${r.idempotencyKey}`, r);
    for (const j of dupes) {
      const r = found.get(`${j.workspaceId}\u0000${j.idempotencyKey}`);
      if (r && r.createdAt.getTime() < cutoff && !expired.some((e) => e.workspaceId === j.workspaceId && e.idempotencyKey === j.idempotencyKey)) {
        expired.push(j);
      }
    }
    if (expired.length > 0) {
      await releaseIdempotencyKeys(this.store.sql, expired.map((j) => found.get(`${j.workspaceId}\u0000${j.idempotencyKey}`)!.id));
      for (const r of await submitJobs(this.store.sql, expired)) {
        created.set(r.id, r);
        const j = expired.find((e) => e.id === r.id)!;
        found.delete(`${j.workspaceId}\u0000${j.idempotencyKey}`);
      }
    }
    return found;
  }

  private async announce(jobs: SubmittedJob[], msgID?: string): Promise<void> {
    if (jobs.length === 0) return;
    if (jobs.length > ANNOUNCE_CHUNK) {
      // Keep each message well under NATS' payload limit.
      for (let i = 0; i < jobs.length; i += ANNOUNCE_CHUNK) await this.announce(jobs.slice(i, i + ANNOUNCE_CHUNK));
      return;
    }
    try {
      await this.js.publish(this.t.subjects.submitted, encode(JobsSubmitted, { jobs }), {
        msgID: msgID ?? (jobs.length === 1 ? jobs[0]!.jobId : `${jobs[0]!.jobId}+${jobs.length}`),
      });
    } catch (err) {
      // Stored jobs are accepted: keep answering, and announce them later. Should this
      // process die first, the scheduler's reconciler finds them in Postgres.
      this.metrics.publishFailures.inc();
      this.log.warn({ err: errorMessage(err), jobs: jobs.length }, 'could not announce submitted jobs; will retry');
      this.unpublished.push(...jobs);
    }
  }

  private async republish(): Promise<void> {
    if (this.unpublished.length === 0) return;
    const jobs = this.unpublished.splice(0, 1000);
    await this.announce(jobs);
  }
}
