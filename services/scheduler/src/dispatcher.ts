import type { JetStreamClient } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { DispatchedJob, JobsChanged, msToDuration } from '@aijob/contracts';
import { encode, traceHeaders, type Topology } from '@aijob/bus';
import { errorMessage, type Logger } from '@aijob/core';
import { childSpan } from '@aijob/telemetry';
import type { Store } from '@aijob/store';

interface DispatchRow {
  id: string;
  workspace_id: string;
  queue: string;
  type: string;
  attempt: number;
  max_attempts: number;
  timeout_ms: number;
  /** The stored input as JSON text, passed to the worker untouched. */
  input_json: string;
  labels: Record<string, string>;
  idempotency_key: string | null;
  created_at: Date;
  dispatched_at: Date;
  /** When the attempt could first start (created, run_at reached, or its retry due). */
  ready_at: Date;
  gang_id: string | null;
  gang_size: number;
  traceparent: string;
}

export interface Dispatched {
  id: string;
  workspaceId: string;
  queue: string;
  attempt: number;
  seq: number;
}

/**
 * Turns admitted jobs into work: one fenced statement moves them to DISPATCHED (only
 * while this replica holds the lease at `epoch`, only if still QUEUED or RETRY_WAIT),
 * records history and reads their input; then each goes to `<ns>.dispatch.<queue>`.
 * Nothing consumes a DISPATCHED event (the record is already written, and the leader
 * knows its slots), so none goes to the events stream: one core NATS JobsChanged notice
 * wakes the WatchJob streams of the round's jobs instead.
 */
export class Dispatcher {
  constructor(
    private readonly store: Store,
    private readonly js: JetStreamClient,
    private readonly nc: NatsConnection,
    private readonly t: Topology,
    private readonly log: Logger,
    private readonly o: { leaseName: string; holder: string },
  ) {}

  async dispatch(ids: string[], epoch: number): Promise<Dispatched[]> {
    if (ids.length === 0) return [];
    const rows = await this.store.sql<DispatchRow[]>`
      WITH before AS (
        SELECT id, next_attempt_at FROM jobs WHERE id = ANY(${ids}::uuid[])
      ), lease AS (
        SELECT 1 FROM leases WHERE name = ${this.o.leaseName} AND holder = ${this.o.holder}
          AND epoch = ${epoch} AND expires_at > now() FOR SHARE
      ), upd AS (
        UPDATE jobs SET state = 'DISPATCHED', attempt = attempt + 1, dispatched_at = now(), updated_at = now(),
          next_attempt_at = NULL, worker_id = NULL, started_at = NULL, progress = NULL, progress_note = NULL
        WHERE id = ANY(${ids}::uuid[]) AND state IN ('QUEUED', 'RETRY_WAIT') AND EXISTS (SELECT 1 FROM lease)
        RETURNING id, workspace_id, queue, type, attempt, max_attempts, timeout_ms, input::text AS input_json, labels, idempotency_key,
          created_at, dispatched_at, gang_id, gang_size, traceparent, run_at
      ), hist AS (
        INSERT INTO job_events (job_id, attempt, state, source, at)
        SELECT id, attempt, 'DISPATCHED', 'scheduler', dispatched_at FROM upd
      )
      SELECT upd.*, GREATEST(upd.created_at, upd.run_at, before.next_attempt_at) AS ready_at
      FROM upd JOIN before USING (id)`;
    // Each job's admission is a span of its own trace; the worker's span continues from it.
    const out = await Promise.all(rows.map(async (r) => {
      const admit = childSpan('aijob.admit', r.traceparent, { 'aijob.job_id': r.id, 'aijob.queue': r.queue, 'aijob.attempt': r.attempt });
      r.traceparent = admit.traceparent;
      try {
        const seq = await this.publish(r);
        admit.end();
        return { id: r.id, workspaceId: r.workspace_id, queue: r.queue, attempt: r.attempt, seq };
      } catch (err) {
        admit.end(err);
        throw err;
      }
    }));
    if (rows.length > 0) this.nc.publish(this.t.subjects.jobsChanged, encode(JobsChanged, { jobIds: rows.map((r) => r.id) }));
    return out;
  }

  /** Publishes one job's work; retried (deduplicated by id and attempt) until stored. */
  private async publish(r: DispatchRow): Promise<number> {
    const data = encode(DispatchedJob, {
      jobId: r.id, workspaceId: r.workspace_id, queue: r.queue, type: r.type, attempt: r.attempt,
      maxAttempts: r.max_attempts, inputJson: Buffer.from(r.input_json), timeout: msToDuration(r.timeout_ms),
      idempotencyKey: r.idempotency_key ?? r.id, labels: r.labels, createdAt: r.created_at,
      dispatchedAt: r.dispatched_at, readyAt: r.ready_at, gangId: r.gang_id ?? '', gangSize: r.gang_size, traceparent: r.traceparent,
    });
    const opts = { msgID: `${r.id}:${r.attempt}`, headers: traceHeaders(r.traceparent || undefined) };
    for (let attempt = 1; ; attempt++) {
      try {
        return (await this.js.publish(this.t.subjects.dispatch(r.queue), data, opts)).seq;
      } catch (err) {
        if (attempt >= 20) throw err;
        this.log.warn({ err: errorMessage(err), job_id: r.id, attempt }, 'dispatch publish failed; retrying');
        await new Promise((res) => setTimeout(res, Math.min(5_000, 50 * 2 ** attempt)));
      }
    }
  }
}
