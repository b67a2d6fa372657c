import type { DeadLetterFilter } from '@aijob/contracts';
import { InvalidArgumentError } from '@aijob/core';
import { traceIdOf } from '@aijob/telemetry';
import {
  deadLetterCounts, listDeadLetters, purgeDeadLetters, retryDeadLetters,
  type AuditWriter, type DeadLetterQuery, type JobRow, type Store,
} from '@aijob/store';
import type { Caller } from './jobs.js';
import type { Submitter } from './submitter.js';
import { parseJobId } from './validation.js';
import type { WatchHub } from './watch-hub.js';

const MAX_IDS = 10_000;

/** The store's query for a filter over the caller's dead letters, its ids checked. */
function query(workspaceId: string, f: DeadLetterFilter | undefined): DeadLetterQuery {
  if ((f?.jobIds.length ?? 0) > MAX_IDS) throw InvalidArgumentError.field('filter.job_ids', `at most ${MAX_IDS}`);
  return {
    workspaceId, queue: f?.queue || undefined, type: f?.type || undefined, errorCode: f?.errorCode || undefined,
    retryable: f?.retryable, failedAfter: f?.failedAfter, failedBefore: f?.failedBefore, provider: f?.provider || undefined,
    jobIds: f?.jobIds.map((id) => parseJobId(id, 'filter.job_ids')),
  };
}

function isEmpty(f: DeadLetterFilter | undefined): boolean {
  return !f || (!f.queue && !f.type && !f.errorCode && f.retryable === undefined && !f.failedAfter && !f.failedBefore &&
    !f.provider && f.jobIds.length === 0);
}

/** Dead letters: jobs that ended FAILED, to inspect, count, retry in bulk or purge. */
export class DeadLetters {
  constructor(private readonly d: { store: Store; submitter: Submitter; hub: WatchHub; audit: AuditWriter }) {}

  async list(caller: Caller, f: DeadLetterFilter | undefined, pageSize: number, pageToken: string):
    Promise<{ rows: JobRow[]; next: string }> {
    if (pageSize < 0 || pageSize > 1000) throw InvalidArgumentError.field('page_size', 'must be between 0 and 1000');
    const limit = pageSize || 100;
    const q = query(caller.principal.workspaceId, f);
    let after: { finishedAt: Date; id: string } | undefined;
    if (pageToken) {
      const [at, id] = Buffer.from(pageToken, 'base64url').toString().split('|');
      if (!at || !id || Number.isNaN(Date.parse(at))) throw InvalidArgumentError.field('page_token', 'is not a token from this API');
      after = { finishedAt: new Date(at), id: parseJobId(id, 'page_token') };
    }
    const rows = await listDeadLetters(this.d.store.sql, q, { after, limit: limit + 1 });
    const page = rows.slice(0, limit);
    const last = page[page.length - 1];
    return {
      rows: page,
      next: rows.length > limit && last ? Buffer.from(`${last.finishedAt!.toISOString()}|${last.id}`).toString('base64url') : '',
    };
  }

  async stats(caller: Caller, f: DeadLetterFilter | undefined) {
    const rows = await deadLetterCounts(this.d.store.sql, query(caller.principal.workspaceId, f));
    const by = (dim: string) => rows.filter((r) => r.dim === dim).map((r) => ({ key: r.key, count: r.n }))
      .sort((a, b) => b.count - a.count);
    return {
      total: rows.find((r) => r.dim === 'total')?.n ?? 0,
      retryable: rows.find((r) => r.dim === 'retryable')?.n ?? 0,
      byErrorCode: by('error_code'), byProvider: by('provider').filter((c) => c.key !== ''), byQueue: by('queue'), byType: by('type'),
    };
  }

  /**
   * Reopens the selected dead letters (and the rest of their gangs) with a fresh set of
   * attempts, applying input overrides, oldest failures first.
   */
  async retry(caller: Caller, r: { filter?: DeadLetterFilter; all: boolean; inputOverrides?: Record<string, unknown>;
    modelOverride: string; limit: number }): Promise<string[]> {
    if (isEmpty(r.filter) && !r.all) throw InvalidArgumentError.field('filter', 'is empty; set all=true to retry every dead letter');
    if (r.limit < 0) throw InvalidArgumentError.field('limit', 'must not be negative');
    if (r.modelOverride.length > 256) throw InvalidArgumentError.field('model_override', 'at most 256 characters');
    const overrides = { ...(r.inputOverrides ?? {}), ...(r.modelOverride ? { model: r.modelOverride } : {}) };
    const rows = await retryDeadLetters(this.d.store.sql, query(caller.principal.workspaceId, r.filter), {
      inputOverrides: overrides, limit: r.limit > 0 ? r.limit : null, actor: caller.principal.subject,
    });
    for (let i = 0; i < rows.length; i += 1000) await this.d.submitter.announceAgain(rows.slice(i, i + 1000));
    for (const row of rows) this.d.hub.notify(row.id);
    this.record(caller, 'dlq.retry', `${rows.length} jobs reopened`);
    return rows.map((x) => x.id);
  }

  /** Deletes the selected dead letters and their history; usage rows stay for billing. */
  async purge(caller: Caller, filter: DeadLetterFilter | undefined, all: boolean): Promise<number> {
    if (isEmpty(filter) && !all) throw InvalidArgumentError.field('filter', 'is empty; set all=true to purge every dead letter');
    const n = await purgeDeadLetters(this.d.store.sql, query(caller.principal.workspaceId, filter));
    this.record(caller, 'dlq.purge', `${n} jobs deleted`);
    return n;
  }

  private record(caller: Caller, action: string, reason: string): void {
    this.d.audit.record({
      actor: caller.principal.subject, workspaceId: caller.principal.workspaceId, action, resource: 'dead-letters',
      outcome: 'allowed', reason, traceId: traceIdOf(caller.traceparent), requestId: caller.requestId,
    });
  }
}
