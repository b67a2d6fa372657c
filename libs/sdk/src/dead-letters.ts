import {
  UsageGroupBy, type DeadLetterFilter, type GetDeadLetterStatsResponse, type GetUsageReportResponse, type Job,
  type JobServiceClient, type ListDeadLettersResponse, type PurgeDeadLettersResponse, type RetryDeadLettersResponse,
} from '@aijob/contracts';
import type { CallOptions, Unary } from './calls.js';

/** Which dead letters (FAILED jobs) of your workspace; empty fields match all. */
export interface DeadLetterQuery {
  queue?: string;
  type?: string;
  errorCode?: string;
  retryable?: boolean;
  provider?: string;
  failedAfter?: Date;
  failedBefore?: Date;
  jobIds?: string[];
}

function toFilter(q: DeadLetterQuery = {}): DeadLetterFilter {
  return {
    queue: q.queue ?? '', type: q.type ?? '', errorCode: q.errorCode ?? '', retryable: q.retryable, provider: q.provider ?? '',
    failedAfter: q.failedAfter, failedBefore: q.failedBefore, jobIds: q.jobIds ?? [],
  };
}

/** Dead letters (`client.deadLetters`). */
export class DeadLettersApi {
  constructor(private readonly jobs: JobServiceClient, private readonly unary: Unary) {}

  async *list(q: DeadLetterQuery = {}, o: { limit?: number; pageSize?: number } = {}, opts?: CallOptions): AsyncGenerator<Job> {
    let pageToken = '';
    let n = 0;
    do {
      const page = await this.unary<ListDeadLettersResponse>((md, co, cb) =>
        this.jobs.listDeadLetters({ filter: toFilter(q), pageSize: o.pageSize ?? 100, pageToken }, md, co, cb), opts, true);
      for (const j of page.jobs) {
        yield j;
        if (o.limit !== undefined && ++n >= o.limit) return;
      }
      pageToken = page.nextPageToken;
    } while (pageToken);
  }

  async stats(q: DeadLetterQuery = {}, opts?: CallOptions): Promise<GetDeadLetterStatsResponse> {
    return this.unary<GetDeadLetterStatsResponse>((md, co, cb) => this.jobs.getDeadLetterStats({ filter: toFilter(q) }, md, co, cb), opts, true);
  }

  /** Reopens the dead letters selected (`all` for an empty query); returns their ids. */
  async retry(q: DeadLetterQuery, o: { all?: boolean; inputOverrides?: Record<string, unknown>; model?: string; limit?: number } = {},
    opts?: CallOptions): Promise<string[]> {
    const res = await this.unary<RetryDeadLettersResponse>((md, co, cb) => this.jobs.retryDeadLetters({
      filter: toFilter(q), all: o.all ?? false, inputOverrides: o.inputOverrides, modelOverride: o.model ?? '', limit: o.limit ?? 0,
    }, md, co, cb), opts, false);
    return res.jobIds;
  }

  /** Deletes the dead letters selected (`all` for an empty query); returns how many. */
  async purge(q: DeadLetterQuery, o: { all?: boolean } = {}, opts?: CallOptions): Promise<number> {
    return (await this.unary<PurgeDeadLettersResponse>((md, co, cb) =>
      this.jobs.purgeDeadLetters({ filter: toFilter(q), all: o.all ?? false }, md, co, cb), opts, false)).purged;
  }
}

export type UsageDimension = 'workspace' | 'provider' | 'model' | 'queue' | 'api_key' | 'day';

const groupings: Record<UsageDimension, UsageGroupBy> = {
  workspace: UsageGroupBy.USAGE_GROUP_BY_WORKSPACE, provider: UsageGroupBy.USAGE_GROUP_BY_PROVIDER,
  model: UsageGroupBy.USAGE_GROUP_BY_MODEL, queue: UsageGroupBy.USAGE_GROUP_BY_QUEUE,
  api_key: UsageGroupBy.USAGE_GROUP_BY_API_KEY, day: UsageGroupBy.USAGE_GROUP_BY_DAY,
};

/** Usage and cost reports (`client.usage`). */
export class UsageApi {
  constructor(private readonly jobs: JobServiceClient, private readonly unary: Unary) {}

  /** Tokens and cost in [from, to) (default: this month), or the last `lastDays` days, grouped as asked. */
  async report(q: { from?: Date; to?: Date; lastDays?: number; groupBy?: UsageDimension[]; allWorkspaces?: boolean } = {},
    opts?: CallOptions): Promise<GetUsageReportResponse> {
    return this.unary<GetUsageReportResponse>((md, co, cb) => this.jobs.getUsageReport({
      startTime: q.from, endTime: q.to, lastDays: q.lastDays ?? 0, groupBy: (q.groupBy ?? []).map((g) => groupings[g]),
      allWorkspaces: q.allWorkspaces ?? false,
    }, md, co, cb), opts, true);
  }
}
