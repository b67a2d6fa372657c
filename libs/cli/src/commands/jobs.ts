import { readFileSync } from 'node:fs';
import { isTerminal, JobState, stateName, type Job } from '@aijob/sdk';
import { bool, list, str, type CommandContext, type Group } from '../command.js';
import { exitCodes, UsageError } from '../errors.js';
import { jobColumns, jobDetail, jobJson, jobRow } from '../jobs-view.js';
import { print, table } from '../output.js';
import { duration, integer, json, pairs, required, time } from '../parse.js';

const states: Record<string, JobState> = {
  queued: JobState.JOB_STATE_QUEUED, dispatched: JobState.JOB_STATE_DISPATCHED, running: JobState.JOB_STATE_RUNNING,
  retry_wait: JobState.JOB_STATE_RETRY_WAIT, succeeded: JobState.JOB_STATE_SUCCEEDED, failed: JobState.JOB_STATE_FAILED,
  cancelled: JobState.JOB_STATE_CANCELLED,
};

export function parseStates(names: string[]): JobState[] {
  return names.map((n) => {
    const s = states[n.toLowerCase().replace('-', '_')];
    if (s === undefined) throw new UsageError(`unknown status "${n}" (one of ${Object.keys(states).join(', ')})`);
    return s;
  });
}

/** Exit code for a finished job: 0 when it succeeded. */
const exitFor = (j: Job) => (j.state === JobState.JOB_STATE_SUCCEEDED ? exitCodes.ok : exitCodes.jobFailed);

/** Follows a job, printing each change (or the final record with --json); returns the last state. */
async function follow(ctx: CommandContext, id: string): Promise<Job> {
  let last: Job | undefined;
  for await (const j of ctx.client.watch(id)) {
    last = j;
    if (ctx.out.format === 'table') {
      const progress = j.progress ? ` ${j.progress}%${j.progressNote ? ` ${j.progressNote}` : ''}` : '';
      ctx.out.write(`${new Date().toISOString()}  ${stateName(j.state).padEnd(10)} attempt ${j.attempt}${progress}\n`);
    }
  }
  if (!last) throw new Error(`no update for job ${id}`);
  if (ctx.out.format === 'json') ctx.out.write(`${JSON.stringify(jobJson(last), null, 2)}\n`);
  else if (last.error) ctx.out.write(`error: ${last.error.code}: ${last.error.message}\n`);
  else if (last.output && isTerminal(last)) ctx.out.write(`output: ${JSON.stringify(last.output)}\n`);
  return last;
}

export const jobsGroup: Group = {
  name: 'jobs',
  summary: 'submit, list, view, watch, cancel and retry jobs',
  commands: [
    {
      name: 'submit', summary: 'submit a job', usage: '<type> [--input JSON] [--queue Q] [--wait]',
      options: {
        input: { type: 'string', description: 'the input, a JSON object' },
        'input-file': { type: 'string', description: 'read the input from a JSON file' },
        queue: { type: 'string', description: 'queue (default "default")' },
        priority: { type: 'string', description: '-1000..1000, higher first' },
        'idempotency-key': { type: 'string', description: 'a repeat within 24 h returns the first job' },
        'max-attempts': { type: 'string', description: '1..100 (default 3)' },
        timeout: { type: 'string', description: 'per attempt, e.g. 30s, 5m' },
        label: { type: 'string', multiple: true, description: 'key=value (repeatable)' },
        'run-at': { type: 'string', description: 'not before: ISO time or +10m' },
        gang: { type: 'string', description: 'gang size: N members that start together' },
        wait: { type: 'boolean', description: 'follow the job to its end (exit 8 unless it succeeds)' },
      },
      async run(ctx) {
        const type = required(ctx.args, 0, 'job type');
        const inputFile = str(ctx, 'input-file');
        const input = inputFile ? json(readFileSync(inputFile, 'utf8'), 'input-file') : str(ctx, 'input') ? json(str(ctx, 'input')!, 'input') : undefined;
        const job = await ctx.client.submit({
          type, input, queue: str(ctx, 'queue'), priority: integer(str(ctx, 'priority'), 'priority'),
          idempotencyKey: str(ctx, 'idempotency-key'), maxAttempts: integer(str(ctx, 'max-attempts'), 'max-attempts'),
          timeoutMs: str(ctx, 'timeout') ? duration(str(ctx, 'timeout')!, 'timeout') : undefined,
          labels: pairs(list(ctx, 'label'), 'label') as Record<string, string>,
          runAt: str(ctx, 'run-at') ? time(str(ctx, 'run-at')!, 'run-at') : undefined,
          gangSize: integer(str(ctx, 'gang'), 'gang'),
        });
        if (bool(ctx, 'wait')) {
          if (ctx.out.format === 'table') ctx.out.write(`submitted ${job.id}${job.deduplicated ? ' (deduplicated)' : ''}\n`);
          return exitFor(await follow(ctx, job.id));
        }
        const members = job.gangMembers.length ? job.gangMembers : [job];
        print(ctx.out, members.map(jobRow), jobColumns, job.gangMembers.length ? members.map(jobJson) : { ...jobJson(job), gangMembers: undefined });
      },
    },
    {
      name: 'list', summary: 'list jobs, newest first', usage: '[--status failed,running] [--queue Q] [--limit N]',
      options: {
        status: { type: 'string', description: 'states, comma-separated: queued, dispatched, running, retry_wait, succeeded, failed, cancelled' },
        queue: { type: 'string', description: 'only this queue' },
        type: { type: 'string', description: 'only this job type' },
        limit: { type: 'string', description: 'at most N jobs (default 100)' },
      },
      async run(ctx) {
        const jobs: Job[] = [];
        for await (const j of ctx.client.list({
          queue: str(ctx, 'queue'), type: str(ctx, 'type'), states: parseStates(list(ctx, 'status')),
          limit: integer(str(ctx, 'limit'), 'limit') ?? 100,
        })) jobs.push(j);
        print(ctx.out, jobs.map(jobRow), jobColumns, jobs.map(jobJson));
      },
    },
    {
      name: 'view', summary: 'show one job in full', usage: '<job id>',
      async run(ctx) {
        const j = await ctx.client.get(required(ctx.args, 0, 'job id'));
        if (ctx.out.format === 'json') ctx.out.write(`${JSON.stringify(jobJson(j), null, 2)}\n`);
        else ctx.out.write(table(jobDetail(j), ['field', 'value'], 120));
      },
    },
    {
      name: 'watch', summary: 'follow a job until it ends (exit 8 unless it succeeds)', usage: '<job id>',
      async run(ctx) {
        return exitFor(await follow(ctx, required(ctx.args, 0, 'job id')));
      },
    },
    {
      name: 'cancel', summary: 'cancel a job that has not finished', usage: '<job id> [--reason TEXT]',
      options: { reason: { type: 'string', description: 'recorded on the job and in the audit log' } },
      async run(ctx) {
        const j = await ctx.client.cancel(required(ctx.args, 0, 'job id'), str(ctx, 'reason') ?? '');
        print(ctx.out, [jobRow(j)], jobColumns, jobJson(j));
      },
    },
    {
      name: 'retry', summary: 'reopen a FAILED or CANCELLED job', usage: '<job id> [--wait]',
      options: { wait: { type: 'boolean', description: 'follow it to its end' } },
      async run(ctx) {
        const j = await ctx.client.retry(required(ctx.args, 0, 'job id'));
        if (bool(ctx, 'wait')) return exitFor(await follow(ctx, j.id));
        print(ctx.out, [jobRow(j)], jobColumns, jobJson(j));
      },
    },
  ],
};
