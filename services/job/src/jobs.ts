import { v7 as uuidv7 } from 'uuid';
import type { Principal, SubmitJobRequest, WorkspacePolicy } from '@aijob/contracts';
import type { NatsConnection } from '@nats-io/transport-node';
import { JobEvent, JobState, jobStateFromJSON } from '@aijob/contracts';
import type { EventPublisher, Topology } from '@aijob/bus';
import { FailedPreconditionError, InvalidArgumentError, NotFoundError, UnavailableError } from '@aijob/core';
import { linkedRootTraceparent, traceIdOf } from '@aijob/telemetry';
import type { AuditLogRow, JobRow, JobStateName } from '@aijob/store';
import { isTerminal } from './job-record.js';
import type { AuditQuery, JobRepository } from './job-repository.js';
import type { NewJob, Submitter, SubmitOutcome } from './submitter.js';
import { parseJobId, validateSubmission, type SubmissionLimits, type ValidSubmission } from './validation.js';
import type { WatchHub } from './watch-hub.js';
import type { PendingLimits } from './pending-limits.js';
import type { UsageReports } from './usage-report.js';
import type { AuditWriter } from '@aijob/store';

/** Who is calling and how to trace it: what every mutation records. */
export interface Caller {
  principal: Principal;
  /** The workspace's policy; absent for an admin acting in another workspace. */
  policy?: WorkspacePolicy;
  traceparent: string;
  requestId: string;
}

const MAX_BATCH = 1000;
const WATCH_POLL_MS = 5_000;

/** The job service's domain: no gRPC here, only jobs, callers and errors. */
export class Jobs {
  constructor(private readonly d: {
    repo: JobRepository;
    submitter: Submitter;
    hub: WatchHub;
    events: EventPublisher;
    nc: NatsConnection;
    topology: Topology;
    limits: SubmissionLimits;
    pending: PendingLimits;
    audit: AuditWriter;
    usage: UsageReports;
    /** Job types live workers announced (accepted besides the configured ones). */
    announcedTypes: () => ReadonlySet<string>;
  }) {}

  async submit(caller: Caller, requests: SubmitJobRequest[], batch: boolean): Promise<(SubmitOutcome & { gangMembers: JobRow[] })[]> {
    if (batch && (requests.length === 0 || requests.length > MAX_BATCH)) {
      throw InvalidArgumentError.field('jobs', `must hold 1 to ${MAX_BATCH} jobs`);
    }
    const violations = [];
    const valid = [];
    // Known types: configured, or announced by a live worker; a workspace policy narrows them.
    const known = [...new Set([...this.d.limits.allowedTypes, ...this.d.announcedTypes()])];
    const policy = caller.policy?.allowedJobTypes ?? [];
    const limits = { ...this.d.limits, allowedTypes: policy.length ? known.filter((t) => policy.includes(t)) : known };
    for (const [i, req] of requests.entries()) {
      try {
        valid.push(validateSubmission(req, limits, batch ? `jobs[${i}].` : ''));
      } catch (err) {
        if (!(err instanceof InvalidArgumentError)) throw err;
        violations.push(...err.violations);
      }
    }
    if (violations.length > 0) throw new InvalidArgumentError(violations);
    await this.d.usage.checkBudget(caller.principal.workspaceId, caller.policy?.monthlyBudgetUsd ?? 0, valid.map((v) => v.type));
    await this.d.pending.admit(caller.principal.workspaceId, caller.policy?.maxPending ?? 0,
      valid.reduce((n, v) => n + Math.max(1, v.gangSize), 0));
    // One trace per job: the jobs of a batch call each start a trace of their own, linked to the call's.
    const entries = valid.map((v) => this.expand(batch
      ? { ...caller, traceparent: linkedRootTraceparent('aijob.submit', { 'aijob.queue': v.queue, 'aijob.type': v.type }) || caller.traceparent }
      : caller, v));
    const outcomes = await this.d.submitter.submit(entries.flat());
    let next = 0;
    return entries.map((members) => {
      const mine = outcomes.slice(next, next + members.length);
      next += members.length;
      return { ...mine[0]!, gangMembers: members.length > 1 ? mine.map((o) => o.row) : [] };
    });
  }

  /** A submission's jobs: one, or a gang's N members sharing a gang id. */
  private expand(caller: Caller, v: ValidSubmission): NewJob[] {
    const base = {
      ...v, workspaceId: caller.principal.workspaceId, createdBy: caller.principal.subject,
      traceparent: caller.traceparent, requestId: caller.requestId,
    };
    if (v.gangSize <= 1) return [{ ...base, id: uuidv7(), gangId: null }];
    const gangId = uuidv7();
    return Array.from({ length: v.gangSize }, (_, rank) => ({
      ...base, id: uuidv7(), gangId, labels: { ...v.labels, 'aijob.gang_rank': String(rank) },
      // Every member carries a key so a repeated gang submit deduplicates as a whole.
      idempotencyKey: v.idempotencyKey === null ? null : rank === 0 ? v.idempotencyKey : `${v.idempotencyKey}#${rank}`,
    }));
  }

  async get(caller: Caller, jobId: string): Promise<JobRow> {
    const id = parseJobId(jobId);
    const row = await this.d.repo.get(caller.principal.workspaceId, id);
    if (!row) throw await this.notFound(caller, id, 'job.get');
    return row;
  }

  /** The usage an attempt of the job reported, costed. */
  async usageOf(jobId: string) {
    return this.d.repo.usage(jobId);
  }

  /**
   * NOT_FOUND for a job not in the caller's workspace. When it exists in another one,
   * the attempt is an isolation probe: the audit row goes to the owning workspace (whose
   * operators want to know), never the caller's, which must not learn the job exists.
   * (A refused mutating call also leaves the caller a row, the same whether the job is
   * missing or another workspace's: the server's onHandlerError does that.)
   */
  private async notFound(caller: Caller, id: string, action: string): Promise<NotFoundError> {
    const owner = await this.d.repo.ownerElsewhere(caller.principal.workspaceId, id);
    if (owner) {
      this.d.audit.record({ ...this.audit(caller, action, id), workspaceId: owner, outcome: 'denied',
        reason: `probe from workspace ${caller.principal.workspaceId}` });
    }
    return new NotFoundError('job', id).about(`job/${id}`);
  }

  async list(caller: Caller, q: { queue: string; type: string; states: JobState[]; pageSize: number; pageToken: string }):
    Promise<{ rows: JobRow[]; nextPageToken: string }> {
    if (q.pageSize < 0 || q.pageSize > 1000) throw InvalidArgumentError.field('page_size', 'must be between 0 and 1000');
    const limit = q.pageSize || 100;
    let beforeId: string | undefined;
    if (q.pageToken) {
      beforeId = Buffer.from(q.pageToken, 'base64url').toString();
      parseJobId(beforeId, 'page_token');
    }
    const states = q.states.map((s) => {
      if (s === JobState.JOB_STATE_UNSPECIFIED || s === JobState.UNRECOGNIZED || !JobState[s]) {
        throw InvalidArgumentError.field('states', 'contains an unknown state');
      }
      return JobState[s].replace('JOB_STATE_', '') as JobStateName;
    });
    const rows = await this.d.repo.list({
      workspaceId: caller.principal.workspaceId, queue: q.queue || undefined, type: q.type || undefined,
      states, beforeId, limit: limit + 1,
    });
    const more = rows.length > limit;
    const page = more ? rows.slice(0, limit) : rows;
    return { rows: page, nextPageToken: more ? Buffer.from(page[page.length - 1]!.id).toString('base64url') : '' };
  }

  /** Sends the job now and after every change; returns after a terminal state. */
  async watch(caller: Caller, jobId: string, signal: AbortSignal, send: (row: JobRow) => Promise<void>): Promise<void> {
    const id = parseJobId(jobId);
    let changed = true;
    let wake: (() => void) | undefined;
    const off = this.d.hub.listen(id, () => { changed = true; wake?.(); });
    const onAbort = () => wake?.();
    signal.addEventListener('abort', onAbort);
    try {
      let last = '';
      for (;;) {
        if (signal.aborted) return;
        if (this.d.hub.draining) throw new UnavailableError('this job service replica is shutting down; watch again');
        if (changed) {
          changed = false;
          const row = await this.d.repo.get(caller.principal.workspaceId, id);
          if (!row) throw await this.notFound(caller, id, 'job.watch');
          const version = `${row.state}|${row.attempt}|${row.updatedAt.getTime()}|${row.progress}`;
          if (version !== last) {
            last = version;
            await send(row);
          }
          if (isTerminal(row.state)) return;
        }
        await new Promise<void>((resolve) => {
          const timer = setTimeout(() => { changed = true; resolve(); }, WATCH_POLL_MS);
          wake = () => { clearTimeout(timer); resolve(); };
          if (changed || signal.aborted) wake();
        });
      }
    } finally {
      off();
      signal.removeEventListener('abort', onAbort);
    }
  }

  async cancel(caller: Caller, jobId: string, reason: string): Promise<JobRow> {
    const id = parseJobId(jobId);
    if (reason.length > 1024) throw InvalidArgumentError.field('reason', 'must be at most 1024 characters');
    const result = await this.d.repo.cancel(caller.principal.workspaceId, id, reason, this.audit(caller, 'job.cancel', id));
    if (!result.exists) throw await this.notFound(caller, id, 'job.cancel');
    if (result.rows.length === 0) throw new FailedPreconditionError(`job ${id} is ${result.previous} and cannot be cancelled`).about(`job/${id}`);
    // Abort running handlers at once; tell the scheduler (slots, pending) and watchers.
    for (const row of result.rows) {
      this.d.nc.publish(this.d.topology.subjects.cancel(row.id), new Uint8Array());
      this.d.hub.notify(row.id);
    }
    await Promise.all(result.rows.map((row) => this.d.events.publish(JobEvent.fromPartial({
      jobId: row.id, attempt: row.attempt, state: JobState.JOB_STATE_CANCELLED, at: new Date(), queue: row.queue,
      workspaceId: row.workspaceId, traceparent: caller.traceparent, source: 'job',
      previousState: jobStateFromJSON(`JOB_STATE_${row.previousState}`), gangId: row.gangId ?? '', gangSize: row.gangSize,
    }))));
    return result.rows[0]!;
  }

  async retry(caller: Caller, jobId: string): Promise<JobRow> {
    const id = parseJobId(jobId);
    const result = await this.d.repo.retry(caller.principal.workspaceId, id, this.audit(caller, 'job.retry', id));
    if (!result.exists) throw await this.notFound(caller, id, 'job.retry');
    if (result.rows.length === 0) {
      throw new FailedPreconditionError(`job ${id} is ${result.previous}; only FAILED or CANCELLED jobs can be retried`).about(`job/${id}`);
    }
    await this.d.submitter.announceAgain(result.rows);
    for (const row of result.rows) this.d.hub.notify(row.id);
    return result.rows[0]!;
  }

  private audit(caller: Caller, action: string, id: string) {
    return {
      actor: caller.principal.subject, workspaceId: caller.principal.workspaceId, action, resource: `job/${id}`,
      outcome: 'allowed' as const, traceId: traceIdOf(caller.traceparent), requestId: caller.requestId,
    };
  }

  async listAudit(caller: Caller, q: AuditQuery): Promise<{ rows: AuditLogRow[]; nextPageToken: string }> {
    if (q.pageSize < 0 || q.pageSize > 1000) throw InvalidArgumentError.field('page_size', 'must be between 0 and 1000');
    if (q.outcome && !['allowed', 'denied', 'failed'].includes(q.outcome)) {
      throw InvalidArgumentError.field('outcome', 'must be allowed, denied or failed');
    }
    let workspaceId = caller.principal.workspaceId;
    if (q.workspaceId && q.workspaceId !== workspaceId) {
      if (!caller.principal.scopes.includes('admin')) throw new NotFoundError('workspace', q.workspaceId);
      workspaceId = q.workspaceId;
    }
    let beforeId: number | undefined;
    if (q.pageToken) {
      beforeId = Number(Buffer.from(q.pageToken, 'base64url').toString());
      if (!Number.isSafeInteger(beforeId)) throw InvalidArgumentError.field('page_token', 'is not a token from this API');
    }
    const limit = q.pageSize || 100;
    const rows = await this.d.repo.auditEvents({ ...q, workspaceId, beforeId, limit: limit + 1 });
    const page = rows.slice(0, limit);
    return { rows: page, nextPageToken: rows.length > limit ? Buffer.from(String(page[page.length - 1]!.id)).toString('base64url') : '' };
  }
}
