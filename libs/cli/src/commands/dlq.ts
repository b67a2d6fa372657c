import { isTerminal, JobState, type DeadLetterQuery } from '@aijob/sdk';
import { bool, list, str, type CommandContext, type Group } from '../command.js';
import { exitCodes, UsageError } from '../errors.js';
import { jobColumns, jobJson, jobRow } from '../jobs-view.js';
import { print, table } from '../output.js';
import { integer, pairs, time } from '../parse.js';

const filterOptions = {
  id: { type: 'string' as const, multiple: true, description: 'these job ids (repeatable or comma-separated)' },
  queue: { type: 'string' as const, description: 'only this queue' },
  type: { type: 'string' as const, description: 'only this job type' },
  code: { type: 'string' as const, description: 'only this error code' },
  retryable: { type: 'boolean' as const, description: 'only retryable failures' },
  'not-retryable': { type: 'boolean' as const, description: 'only non-retryable failures' },
  provider: { type: 'string' as const, description: 'only jobs for this model provider' },
  since: { type: 'string' as const, description: 'failed after: ISO time or 24h (ago)' },
  until: { type: 'string' as const, description: 'failed before: ISO time or 1h (ago)' },
};

/** Job ids named as arguments or with --id. */
const namedIds = (ctx: CommandContext) => [...new Set([...ctx.args, ...list(ctx, 'id')])];

function query(ctx: CommandContext): DeadLetterQuery {
  if (bool(ctx, 'retryable') && bool(ctx, 'not-retryable')) throw new UsageError('--retryable and --not-retryable exclude each other');
  return {
    jobIds: namedIds(ctx), queue: str(ctx, 'queue'), type: str(ctx, 'type'), errorCode: str(ctx, 'code'),
    provider: str(ctx, 'provider'),
    retryable: bool(ctx, 'retryable') ? true : bool(ctx, 'not-retryable') ? false : undefined,
    failedAfter: str(ctx, 'since') ? time(str(ctx, 'since')!, 'since') : undefined,
    failedBefore: str(ctx, 'until') ? time(str(ctx, 'until')!, 'until') : undefined,
  };
}

/** Polls the retried jobs and prints one line per change in the tally, until all end. */
async function progress(ctx: CommandContext, ids: string[]): Promise<void> {
  let last = '';
  for (;;) {
    const tally: Record<string, number> = {};
    let done = 0;
    for (let i = 0; i < ids.length; i += 100) {
      const page = await Promise.all(ids.slice(i, i + 100).map((id) => ctx.client.get(id)));
      for (const j of page) {
        const s = JobState[j.state].replace('JOB_STATE_', '').toLowerCase();
        tally[s] = (tally[s] ?? 0) + 1;
        if (isTerminal(j)) done++;
      }
    }
    const line = `${done}/${ids.length} finished: ${Object.entries(tally).map(([k, v]) => `${v} ${k}`).join(', ')}`;
    if (line !== last) { ctx.out.write(`${line}\n`); last = line; }
    if (done === ids.length) return;
    await new Promise((r) => setTimeout(r, 1_000));
  }
}

export const dlqGroup: Group = {
  name: 'dlq',
  summary: 'dead letters: jobs that ended FAILED',
  commands: [
    {
      name: 'list', summary: 'list dead letters, latest failure first', usage: '[job id ...] [filters] [--limit N]',
      options: { ...filterOptions, limit: { type: 'string', description: 'at most N (default 100)' } },
      async run(ctx) {
        const jobs = [];
        for await (const j of ctx.client.deadLetters.list(query(ctx), { limit: integer(str(ctx, 'limit'), 'limit') ?? 100 })) jobs.push(j);
        print(ctx.out, jobs.map(jobRow), jobColumns, jobs.map(jobJson));
      },
    },
    {
      name: 'stats', summary: 'count dead letters by error code, provider, queue and type', usage: '[job id ...] [filters]',
      options: filterOptions,
      async run(ctx) {
        const s = await ctx.client.deadLetters.stats(query(ctx));
        if (ctx.out.format === 'json') { ctx.out.write(`${JSON.stringify(s, null, 2)}\n`); return; }
        ctx.out.write(`total ${s.total}, retryable ${s.retryable}\n`);
        for (const [title, rows] of [['error code', s.byErrorCode], ['provider', s.byProvider], ['queue', s.byQueue], ['type', s.byType]] as const) {
          if (rows.length === 0) continue;
          ctx.out.write(`\n${table(rows.map((r) => ({ [title]: r.key, count: r.count })), [title, 'count'])}`);
        }
      },
    },
    {
      name: 'retry', summary: 'reopen dead letters (by id, a filter, or --all), showing progress', usage: '[job id ...] [filters | --all] [--set k=v] [--model M]',
      options: {
        ...filterOptions,
        all: { type: 'boolean', description: 'every dead letter (needed when no filter is given)' },
        set: { type: 'string', multiple: true, description: 'override an input field: key=JSON value (repeatable)' },
        model: { type: 'string', description: 'retry on this model (sets input.model)' },
        limit: { type: 'string', description: 'at most N, oldest failures first' },
        'no-wait': { type: 'boolean', description: 'do not follow the retried jobs' },
      },
      async run(ctx) {
        const ids = await ctx.client.deadLetters.retry(query(ctx), {
          all: bool(ctx, 'all'), inputOverrides: pairs(list(ctx, 'set'), 'set', true), model: str(ctx, 'model'),
          limit: integer(str(ctx, 'limit'), 'limit'),
        });
        // Ids asked for by name that were not dead letters (unknown, or not FAILED): exit 3.
        const missed = namedIds(ctx).filter((id) => !ids.includes(id));
        if (missed.length) ctx.out.error(`aijob: not dead letters (no such FAILED job): ${missed.join(', ')}\n`);
        const code = missed.length ? exitCodes.notFound : exitCodes.ok;
        if (ctx.out.format === 'json') { ctx.out.write(`${JSON.stringify({ retried: ids.length, jobIds: ids, notDeadLetters: missed }, null, 2)}\n`); return code; }
        ctx.out.write(`retried ${ids.length} jobs\n`);
        if (!bool(ctx, 'no-wait') && ids.length > 0) await progress(ctx, ids);
        return code;
      },
    },
    {
      name: 'purge', summary: 'delete dead letters (usage is kept)', usage: '[job id ...] [filters | --all] --yes',
      options: { ...filterOptions, all: { type: 'boolean', description: 'every dead letter' }, yes: { type: 'boolean', description: 'confirm' } },
      async run(ctx) {
        if (!bool(ctx, 'yes')) throw new UsageError('purge deletes jobs for good: add --yes to confirm');
        const n = await ctx.client.deadLetters.purge(query(ctx), { all: bool(ctx, 'all') });
        print(ctx.out, [{ purged: n }], ['purged'], { purged: n });
      },
    },
  ],
};
