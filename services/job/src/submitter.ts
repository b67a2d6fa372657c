import { JobsSubmitted, type SubmittedJob } from '@aijob/contracts';
import { encode, type Topology } from '@aijob/bus';
import type { JetStreamClient } from '@nats-io/jetstream';
import { Batcher, errorMessage, type Logger } from '@aijob/core';
import { counter } from '@aijob/telemetry';
import type { Store } from '@aijob/store';
import { jobColumns, type JobRow } from './job-record.js';
import type { ValidSubmission } from './validation.js';

/** A validated submission with its identity: ready to be stored. */
export interface NewJob extends ValidSubmission {
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
      jobId: row.id, workspaceId: row.workspace_id, queue: row.queue, type: row.type, priority: row.priority,
      createdAt: row.created_at, runAt: row.run_at ?? undefined, gangSize: row.gang_size, gangId: row.gang_id ?? '',
      traceparent: row.traceparent,
    })), `${rows[0]!.id}:reopened:${rows[0]!.updated_at.getTime()}`);
  }

  async close(): Promise<void> {
    await this.batcher.idle();
    clearInterval(this.retryTimer);
    await this.republish();
  }

  private async commit(groups: NewJob[][]): Promise<SubmitOutcome[][]> {
    const all = groups.flat();
    const created = new Map<string, Date>();
    for (const r of await this.insert(all)) created.set(r.id, r.created_at);
    const duplicates = await this.resolveDuplicates(all.filter((j) => !created.has(j.id)), created);

    const fresh = all.filter((j) => created.has(j.id));
    for (const j of fresh) this.metrics.submitted.inc({ queue: j.queue, type: j.type });
    await this.announce(fresh.map((j) => ({
      jobId: j.id, workspaceId: j.workspaceId, queue: j.queue, type: j.type, priority: j.priority,
      createdAt: created.get(j.id)!, runAt: j.runAt ?? undefined, gangSize: j.gangSize, gangId: j.gangId ?? '',
      traceparent: j.traceparent,
    })));

    return groups.map((group) => group.map((j) => {
      const at = created.get(j.id);
      if (at) return { row: rowOf(j, at), deduplicated: false };
      return { row: duplicates.get(`${j.workspaceId}\u0000${j.idempotencyKey}`)!, deduplicated: true };
    }));
  }

  private async insert(jobs: NewJob[]): Promise<{ id: string; created_at: Date }[]> {
    if (jobs.length === 0) return [];
    // One JSON parameter for the whole batch: one round trip, no per-row parameters.
    const rows = jobs.map((j) => ({
      id: j.id, workspace_id: j.workspaceId, queue: j.queue, type: j.type, priority: j.priority,
      max_attempts: j.maxAttempts, timeout_ms: j.timeoutMs, input: j.input, labels: j.labels,
      idempotency_key: j.idempotencyKey, run_at: j.runAt, created_by: j.createdBy, traceparent: j.traceparent,
      request_id: j.requestId, gang_id: j.gangId, gang_size: j.gangSize, retry_base_ms: j.retryBaseMs,
    }));
    return this.store.sql<{ id: string; created_at: Date }[]>`
      WITH u AS (
        SELECT * FROM json_to_recordset(${JSON.stringify(rows)}::text::json) AS u(
          id uuid, workspace_id text, queue text, type text, priority int, max_attempts int, timeout_ms int,
          input jsonb, labels jsonb, idempotency_key text, run_at timestamptz, created_by text, traceparent text,
          request_id text, gang_id uuid, gang_size int, retry_base_ms int)
      ), ins AS (
        INSERT INTO jobs (id, workspace_id, queue, type, state, priority, max_attempts, timeout_ms, input,
                          labels, idempotency_key, run_at, created_by, traceparent, gang_id, gang_size, retry_base_ms)
        SELECT id, workspace_id, queue, type, 'QUEUED', priority, max_attempts, timeout_ms, input,
               labels, idempotency_key, run_at, created_by, traceparent, gang_id, gang_size, retry_base_ms
        FROM u
        ON CONFLICT (workspace_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
        RETURNING id, created_at
      ), audit AS (
        INSERT INTO audit_log (at, actor, workspace_id, action, resource, outcome, trace_id, request_id)
        SELECT ins.created_at, u.created_by, u.workspace_id, 'job.submit', 'job/' || u.id, 'allowed',
               split_part(u.traceparent, '-', 2), u.request_id
        FROM ins JOIN u ON u.id = ins.id
      )
      SELECT id, created_at FROM ins`;
  }

  /**
   * Jobs not inserted collided on (workspace, idempotency_key). Inside the window the
   * first job answers; past it, the old job gives up its key and the new one is stored.
   */
  private async resolveDuplicates(dupes: NewJob[], created: Map<string, Date>): Promise<Map<string, JobRow>> {
    const found = new Map<string, JobRow>();
    if (dupes.length === 0) return found;
    const rows = await this.store.sql.unsafe<JobRow[]>(
      `SELECT ${jobColumns} FROM jobs WHERE (workspace_id, idempotency_key) IN
         (SELECT * FROM unnest($1::text[], $2::text[]))`,
      [dupes.map((j) => j.workspaceId), dupes.map((j) => j.idempotencyKey!)]);
    const expired: NewJob[] = [];
    const cutoff = Date.now() - this.o.idempotencyWindowMs;
    for (const r of rows) found.set(`${r.workspace_id}\u0000${r.idempotency_key}`, r);
    for (const j of dupes) {
      const r = found.get(`${j.workspaceId}\u0000${j.idempotencyKey}`);
      if (r && r.created_at.getTime() < cutoff && !expired.some((e) => e.workspaceId === j.workspaceId && e.idempotencyKey === j.idempotencyKey)) {
        expired.push(j);
      }
    }
    if (expired.length > 0) {
      await this.store.sql`UPDATE jobs SET idempotency_key = NULL
        WHERE id = ANY(${expired.map((j) => found.get(`${j.workspaceId}\u0000${j.idempotencyKey}`)!.id)}::uuid[])`;
      for (const r of await this.insert(expired)) {
        created.set(r.id, r.created_at);
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

function rowOf(j: NewJob, createdAt: Date): JobRow {
  return {
    id: j.id, workspace_id: j.workspaceId, queue: j.queue, type: j.type, state: 'QUEUED', priority: j.priority,
    attempt: 0, max_attempts: j.maxAttempts, timeout_ms: j.timeoutMs, input: j.input,
    output: null, error_code: null, error_message: null, error_retryable: null, labels: j.labels,
    idempotency_key: j.idempotencyKey, run_at: j.runAt, next_attempt_at: null, gang_id: j.gangId, gang_size: j.gangSize,
    worker_id: null, progress: null, progress_note: null, created_by: j.createdBy, traceparent: j.traceparent,
    created_at: createdAt, updated_at: createdAt, dispatched_at: null, started_at: null, finished_at: null,
  };
}
