import { raw, type Queryable, type UsageRow } from './job-row.js';

/** The usage rows of one job, in the order they were written. */
export async function usageOfJob(q: Queryable, jobId: string):
  Promise<Pick<UsageRow, 'provider' | 'model' | 'promptTokens' | 'completionTokens' | 'costUsd'>[]> {
  const rows = await q<{ provider: string; model: string; p: string; c: string; cost: number }[]>`
    SELECT provider, model, prompt_tokens::text AS p, completion_tokens::text AS c, cost_usd AS cost
    FROM usage WHERE job_id = ${jobId} ORDER BY id`;
  return rows.map((r) => ({ provider: r.provider, model: r.model, promptTokens: Number(r.p), completionTokens: Number(r.c), costUsd: r.cost }));
}

/** What a usage report groups by. */
export const usageDimensions = {
  workspace: 'workspace_id',
  provider: 'provider',
  model: 'model',
  queue: 'queue',
  api_key: 'api_key_id',
  day: `to_char(date_trunc('day', at AT TIME ZONE 'UTC'), 'YYYY-MM-DD')`,
} as const;
export type UsageDimension = keyof typeof usageDimensions;

/** Totals of a group: `groups` holds the dimensions' values in the order asked. */
export interface UsageTotals {
  groups: string[];
  jobs: number;
  calls: number;
  promptTokens: number;
  completionTokens: number;
  costUsd: number;
}

/**
 * Usage in [start, end) of one workspace (or all, when `workspaceId` is undefined),
 * grouped by `dims` (none: one row of totals), largest cost first.
 */
export async function usageTotals(q: Queryable, r: { start: Date; end: Date; workspaceId?: string; dims: readonly UsageDimension[] }):
  Promise<UsageTotals[]> {
  const select = r.dims.map((d, i) => `${usageDimensions[d]} AS g${i}, `).join('');
  const groupBy = r.dims.length ? `GROUP BY ${r.dims.map((_, i) => `g${i}`).join(', ')}` : '';
  const rows = await q<(Record<string, string | null> & { jobs: number; calls: number; prompt: string | null;
    completion: string | null; cost: number | null })[]>`
    SELECT ${raw(q, select)}count(DISTINCT job_id)::int AS jobs, count(*)::int AS calls,
      sum(prompt_tokens)::text AS prompt, sum(completion_tokens)::text AS completion, sum(cost_usd)::float8 AS cost
    FROM usage WHERE at >= ${r.start} AND at < ${r.end} ${r.workspaceId === undefined ? q`` : q`AND workspace_id = ${r.workspaceId}`}
    ${raw(q, groupBy)} ORDER BY cost DESC NULLS LAST`;
  return rows.map((x) => ({
    groups: r.dims.map((_, i) => String(x[`g${i}`] ?? '')), jobs: x.jobs, calls: x.calls,
    promptTokens: Number(x.prompt ?? 0), completionTokens: Number(x.completion ?? 0), costUsd: x.cost ?? 0,
  }));
}

/** Distinct jobs with usage in [start, end) of one workspace, or all. */
export async function usageJobCount(q: Queryable, r: { start: Date; end: Date; workspaceId?: string }): Promise<number> {
  const [row] = await q<{ jobs: number }[]>`
    SELECT count(DISTINCT job_id)::int AS jobs FROM usage WHERE at >= ${r.start} AND at < ${r.end}
      ${r.workspaceId === undefined ? q`` : q`AND workspace_id = ${r.workspaceId}`}`;
  return row?.jobs ?? 0;
}

/** A workspace's model spend in US dollars since `since`. */
export async function usageSpend(q: Queryable, workspaceId: string, since: Date): Promise<number> {
  const [row] = await q<{ usd: number | null }[]>`
    SELECT sum(cost_usd)::float8 AS usd FROM usage WHERE workspace_id = ${workspaceId} AND at >= ${since}`;
  return row?.usd ?? 0;
}
