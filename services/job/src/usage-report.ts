import { UsageGroupBy, type GetUsageReportRequest, type UsageRow } from '@aijob/contracts';
import { InvalidArgumentError, NotFoundError, ResourceExhaustedError } from '@aijob/core';
import type { Store } from '@aijob/store';
import type { Caller } from './jobs.js';

const dimensions: Partial<Record<UsageGroupBy, { name: string; sql: string }>> = {
  [UsageGroupBy.USAGE_GROUP_BY_WORKSPACE]: { name: 'workspace', sql: 'workspace_id' },
  [UsageGroupBy.USAGE_GROUP_BY_PROVIDER]: { name: 'provider', sql: 'provider' },
  [UsageGroupBy.USAGE_GROUP_BY_MODEL]: { name: 'model', sql: 'model' },
  [UsageGroupBy.USAGE_GROUP_BY_QUEUE]: { name: 'queue', sql: 'queue' },
  [UsageGroupBy.USAGE_GROUP_BY_API_KEY]: { name: 'api_key', sql: 'api_key_id' },
  [UsageGroupBy.USAGE_GROUP_BY_DAY]: { name: 'day', sql: `to_char(date_trunc('day', at AT TIME ZONE 'UTC'), 'YYYY-MM-DD')` },
};

/** The first instant of the current month, UTC. */
export function monthStart(now = new Date()): Date {
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1));
}

interface Totals { jobs: number; calls: number; prompt: string; completion: string; cost: number }

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
    const params: unknown[] = [start, end];
    let scope = '';
    if (!req.allWorkspaces) { params.push(caller.principal.workspaceId); scope = ' AND workspace_id = $3'; }
    const select = dims.map((d, i) => `${d.sql} AS g${i}`);
    const groupBy = dims.length ? `GROUP BY ${dims.map((_, i) => `g${i}`).join(', ')}` : '';
    const rows = await this.store.sql.unsafe<(Totals & Record<string, string>)[]>(
      `SELECT ${[...select, 'count(DISTINCT job_id)::int AS jobs', 'count(*)::int AS calls',
        'sum(prompt_tokens)::text AS prompt', 'sum(completion_tokens)::text AS completion', 'sum(cost_usd)::float8 AS cost'].join(', ')}
       FROM usage WHERE at >= $1 AND at < $2${scope} ${groupBy} ORDER BY cost DESC NULLS LAST`, params as never[]);
    const toRow = (r: Totals & Record<string, string>): UsageRow => ({
      group: Object.fromEntries(dims.map((d, i) => [d.name, String(r[`g${i}`] ?? '')])),
      jobs: r.jobs, calls: r.calls, promptTokens: Number(r.prompt ?? 0), completionTokens: Number(r.completion ?? 0),
      costUsd: r.cost ?? 0,
    });
    const out = rows.map(toRow);
    const totals: UsageRow = {
      group: {}, jobs: 0, calls: 0, promptTokens: 0, completionTokens: 0, costUsd: 0,
    };
    if (dims.length === 0 && out[0]) Object.assign(totals, out[0]);
    else for (const r of out) {
      totals.calls += r.calls; totals.promptTokens += r.promptTokens; totals.completionTokens += r.completionTokens;
      totals.costUsd += r.costUsd;
    }
    if (dims.length) {
      const [j] = await this.store.sql.unsafe<{ jobs: number }[]>(
        `SELECT count(DISTINCT job_id)::int AS jobs FROM usage WHERE at >= $1 AND at < $2${scope}`, params as never[]);
      totals.jobs = j?.jobs ?? 0;
    }
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
      const [row] = await this.store.sql<{ usd: number | null }[]>`
        SELECT sum(cost_usd)::float8 AS usd FROM usage WHERE workspace_id = ${workspaceId} AND at >= ${monthStart()}`;
      s = { at: Date.now(), usd: row?.usd ?? 0 };
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
