import type { JetStreamClient } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { DispatchedJob, JobsChanged, msToDuration } from '@aijob/contracts';
import { encode, traceHeaders, type Topology } from '@aijob/bus';
import { errorMessage, type Logger } from '@aijob/core';
import { childSpan } from '@aijob/telemetry';
import { dispatchJobs, type DispatchedAttempt, type Store } from '@aijob/store';

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
    const rows = await dispatchJobs(this.store.sql, ids, { name: this.o.leaseName, holder: this.o.holder, epoch });
    // Each job's admission is a span of its own trace; the worker's span continues from it.
    const out = await Promise.all(rows.map(async (r) => {
      const admit = childSpan('aijob.admit', r.traceparent, { 'aijob.job_id': r.id, 'aijob.queue': r.queue, 'aijob.attempt': r.attempt });
      r.traceparent = admit.traceparent;
      try {
        const seq = await this.publish(r);
        admit.end();
        return { id: r.id, workspaceId: r.workspaceId, queue: r.queue, attempt: r.attempt, seq };
      } catch (err) {
        admit.end(err);
        throw err;
      }
    }));
    if (rows.length > 0) this.nc.publish(this.t.subjects.jobsChanged, encode(JobsChanged, { jobIds: rows.map((r) => r.id) }));
    return out;
  }

  /** Publishes one job's work; retried (deduplicated by id and attempt) until stored. */
  private async publish(r: DispatchedAttempt): Promise<number> {
    const data = encode(DispatchedJob, {
      jobId: r.id, workspaceId: r.workspaceId, queue: r.queue, type: r.type, attempt: r.attempt,
      maxAttempts: r.maxAttempts, inputJson: Buffer.from(r.inputJson), timeout: msToDuration(r.timeoutMs),
      idempotencyKey: r.idempotencyKey ?? r.id, labels: r.labels, createdAt: r.createdAt,
      dispatchedAt: r.dispatchedAt, readyAt: r.readyAt, gangId: r.gangId ?? '', gangSize: r.gangSize, traceparent: r.traceparent,
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
