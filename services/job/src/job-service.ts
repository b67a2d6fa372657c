import { JobServiceService } from '@aijob/contracts';
import { currentTraceparent } from '@aijob/telemetry';
import type { CallContext, Implementation } from '@aijob/server';
import { toJob } from './job-record.js';
import type { DeadLetters } from './dead-letters.js';
import type { Caller, Jobs } from './jobs.js';
import type { UsageReports } from './usage-report.js';

const TRACEPARENT = /^[\da-f]{2}-[\da-f]{32}-[\da-f]{16}-[\da-f]{2}$/;

/** The caller of an authorized call, with the trace the call belongs to. */
function callerOf(ctx: CallContext): Caller {
  let traceparent = currentTraceparent();
  if (!traceparent) {
    const given = ctx.metadata.get('traceparent')[0];
    if (typeof given === 'string' && TRACEPARENT.test(given)) traceparent = given;
  }
  return { principal: ctx.principal!, policy: ctx.policy, traceparent, requestId: ctx.requestId };
}

/** gRPC handlers of aijob.v1.JobService: proto in, domain calls, proto out. */
export function jobServiceHandlers(jobs: Jobs, dlq: DeadLetters, usage: UsageReports): Implementation<typeof JobServiceService> {
  return {
    async submitJob(req, ctx) {
      const [outcome] = await jobs.submit(callerOf(ctx), [req], false);
      return { job: toJob(outcome!.row), deduplicated: outcome!.deduplicated, gangMembers: outcome!.gangMembers.map(toJob) };
    },
    async submitJobs(req, ctx) {
      const outcomes = await jobs.submit(callerOf(ctx), req.jobs, true);
      return { results: outcomes.map((o) => ({ job: toJob(o.row), deduplicated: o.deduplicated, gangMembers: o.gangMembers.map(toJob) })) };
    },
    async getJob(req, ctx) {
      const caller = callerOf(ctx);
      const row = await jobs.get(caller, req.jobId);
      return { job: { ...toJob(row), usage: await jobs.usageOf(row.id) } };
    },
    async listJobs(req, ctx) {
      const { rows, nextPageToken } = await jobs.list(callerOf(ctx), req);
      return { jobs: rows.map(toJob), nextPageToken };
    },
    async watchJob(req, ctx, send) {
      await jobs.watch(callerOf(ctx), req.jobId, ctx.signal, (row) => send({ job: toJob(row) }));
    },
    async cancelJob(req, ctx) {
      return { job: toJob(await jobs.cancel(callerOf(ctx), req.jobId, req.reason)) };
    },
    async retryJob(req, ctx) {
      return { job: toJob(await jobs.retry(callerOf(ctx), req.jobId)) };
    },
    async listAuditEvents(req, ctx) {
      const { rows, nextPageToken } = await jobs.listAudit(callerOf(ctx), req);
      return {
        events: rows.map((r) => ({
          id: r.id, time: r.at, actor: r.actor, workspaceId: r.workspaceId, action: r.action,
          resource: r.resource, outcome: r.outcome, reason: r.reason, traceId: r.traceId, requestId: r.requestId,
        })),
        nextPageToken,
      };
    },
    async listDeadLetters(req, ctx) {
      const { rows, next } = await dlq.list(callerOf(ctx), req.filter, req.pageSize, req.pageToken);
      return { jobs: rows.map(toJob), nextPageToken: next };
    },
    async getDeadLetterStats(req, ctx) {
      return dlq.stats(callerOf(ctx), req.filter);
    },
    async retryDeadLetters(req, ctx) {
      const ids = await dlq.retry(callerOf(ctx), {
        filter: req.filter, all: req.all, inputOverrides: req.inputOverrides, modelOverride: req.modelOverride, limit: req.limit,
      });
      return { retried: ids.length, jobIds: ids };
    },
    async purgeDeadLetters(req, ctx) {
      return { purged: await dlq.purge(callerOf(ctx), req.filter, req.all) };
    },
    async getUsageReport(req, ctx) {
      return usage.report(callerOf(ctx), req);
    },
  };
}
