import { UsageGroupBy, type GetUsageReportRequest, type UsageRow } from '@aijob/contracts';
import { InvalidArgumentError, NotFoundError, ResourceExhaustedError } from '@aijob/core';
import { usageJobCount, usageSpend, usageTotals, type Store, type UsageDimension } from '@aijob/store';
import type { Caller } from './jobs.js';

const dimensions: Partial<Record<UsageGroupBy, UsageDimension>> = {
  [UsageGroupBy.USAGE_GROUP_BY_WORKSPACE]: 'workspace',
  [UsageGroupBy.USAGE_GROUP_BY_PROVIDER]: 'provider',
  [UsageGroupBy.USAGE_GROUP_BY_MODEL]: 'model',
  [UsageGroupBy.USAGE_GROUP_BY_QUEUE]: 'queue',
  [UsageGroupBy.USAGE_GROUP_BY_API_KEY]: 'api_key',
  [UsageGroupBy.USAGE_GROUP_BY_DAY]: 'day',
};

/** The first instant of the current month, UTC. */
export function monthStart(now = new Date()): Date {
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1));
}

/** Tokens and cost from the usage table, and the monthly budget they are held to. */
export class UsageReports {
  private readonly spend = new Map<string, { at: number; usd: number }>();

  constructor(private readonly store: Store) {}

  async report(caller: Caller, req: GetUsageReportRequest) {
    const end = req.endTime ?? new Date();
    if (req.lastDays < 0 || req.lastDays > 3660) throw InvalidArgumentError.field('last_days', 'must be between 0 and 3660');
    const start = req.lastDays > 0 ? new Date(end.getTime() - req.lastDays * 86_400_000) : req.startTime ?? monthStart(end);
    if (start.getTime() >= end.getTime()) throw InvalidArgumentError.field('start_time', 'must be before end_time');
    if (req.allWorkspaces && !caller.principal.scopes.includes('admin')) throw new NotFoundError('workspace', '*');
    const dims = [...new Set(req.groupBy)].map((g) => {
      const d = dimensions[g];
      if (!d) throw InvalidArgumentError.field('group_by', `unknown grouping ${g}`);
      return d;
    });
    const scope = { start, end, workspaceId: req.allWorkspaces ? undefined : caller.principal.workspaceId };
    const out: UsageRow[] = (await usageTotals(this.store.sql, { ...scope, dims })).map((r) => ({
      group: Object.fromEntries(dims.map((d, i) => [d, r.groups[i]!])),
      jobs: r.jobs, calls: r.calls, promptTokens: r.promptTokens, completionTokens: r.completionTokens, costUsd: r.costUsd,
    }));
    const totals: UsageRow = {
      group: {}, jobs: 0, calls: 0, promptTokens: 0, completionTokens: 0, costUsd: 0,
    };
    if (dims.length === 0 && out[0]) Object.assign(totals, out[0]);
    else for (const r of out) {
      totals.calls += r.calls; totals.promptTokens += r.promptTokens; totals.completionTokens += r.completionTokens;
      totals.costUsd += r.costUsd;
    }
    if (dims.length) totals.jobs = await usageJobCount(this.store.sql, scope);
    return { startTime: start, endTime: end, totals, rows: dims.length ? out : [] };
  }

  /**
   * Refuses llm.* submissions of a workspace whose spend this month reached its budget.
   * The month's spend is read at most every 5 seconds per workspace.
   */
  async checkBudget(workspaceId: string, budgetUsd: number, types: string[]): Promise<void> {
    if (budgetUsd <= 0 || !types.some((t) => t.startsWith('llm.'))) return;
    let s = this.spend.get(workspaceId);
    if (!s || Date.now() - s.at > 5_000) {
      s = { at: Date.now(), usd: await usageSpend(this.store.sql, workspaceId, monthStart()) };
      this.spend.set(workspaceId, s);
    }
    if (s.usd >= budgetUsd) {
      const now = new Date();
      const nextMonth = Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1);
      throw new ResourceExhaustedError(`workspace ${workspaceId} spent $${s.usd.toFixed(2)} of its $${budgetUsd} monthly LLM budget`,
        nextMonth - now.getTime(), 'BUDGET_EXHAUSTED');
    }
  }
}
