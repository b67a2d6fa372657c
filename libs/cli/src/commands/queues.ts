import { JobState, type Queue } from '@aijob/sdk';
import { list, str, type Group } from '../command.js';
import { UsageError } from '../errors.js';
import { print, table } from '../output.js';
import { integer, number, required } from '../parse.js';

const columns = ['queue', 'state', 'max', 'rate', 'pending', 'dispatched', 'running', 'retry_wait', 'oldest_s'];
const row = (q: Queue) => ({
  queue: q.name, state: q.paused ? 'paused' : 'active', max: q.maxConcurrency, rate: q.rateLimitPerSecond || '-',
  pending: q.stats?.pending ?? 0, dispatched: q.stats?.dispatched ?? 0, running: q.stats?.running ?? 0,
  retry_wait: q.stats?.retryWait ?? 0, oldest_s: Math.round(q.stats?.oldestPendingAgeSeconds ?? 0),
});

export const queueGroup: Group = {
  name: 'queue',
  summary: 'queues: list, stats, pause, resume, clear, put',
  commands: [
    {
      name: 'list', summary: 'every queue with live counts', usage: '',
      async run(ctx) {
        const qs = await ctx.client.queues.list();
        print(ctx.out, qs.map(row), columns, qs);
      },
    },
    {
      name: 'stats', summary: 'cluster statistics: pending, workers, slots, leader', usage: '',
      async run(ctx) {
        const s = await ctx.client.queues.clusterStats();
        if (ctx.out.format === 'json') { ctx.out.write(`${JSON.stringify(s, null, 2)}\n`); return; }
        ctx.out.write(table([{ pending: s.totalPending, workers: s.liveWorkers, slots: s.totalSlots, free: s.freeSlots, leader: s.leader }],
          ['pending', 'workers', 'slots', 'free', 'leader']));
        const depth = Object.entries(s.queueDepth).map(([queue, n]) => ({ queue, depth: n }));
        if (depth.length) ctx.out.write(`\n${table(depth, ['queue', 'depth'])}`);
      },
    },
    {
      name: 'pause', summary: 'start no more jobs (running ones finish, new ones are accepted)', usage: '<queue>',
      async run(ctx) {
        const q = await ctx.client.queues.pause(required(ctx.args, 0, 'queue'));
        print(ctx.out, [row(q)], columns, q);
      },
    },
    {
      name: 'resume', summary: 'start jobs again', usage: '<queue>',
      async run(ctx) {
        const q = await ctx.client.queues.resume(required(ctx.args, 0, 'queue'));
        print(ctx.out, [row(q)], columns, q);
      },
    },
    {
      name: 'clear', summary: 'cancel the queue\'s waiting jobs of your workspace', usage: '<queue> [--states queued,retry_wait] [--reason TEXT]',
      options: {
        states: { type: 'string', description: 'queued and/or retry_wait (default both)' },
        reason: { type: 'string', description: 'recorded on each job' },
      },
      async run(ctx) {
        const states = list(ctx, 'states').map((s) => {
          if (s === 'queued') return JobState.JOB_STATE_QUEUED;
          if (s === 'retry_wait') return JobState.JOB_STATE_RETRY_WAIT;
          throw new UsageError(`--states: "${s}" (queued or retry_wait)`);
        });
        const n = await ctx.client.queues.clear(required(ctx.args, 0, 'queue'), { states, reason: str(ctx, 'reason') });
        print(ctx.out, [{ cancelled: n }], ['cancelled'], { cancelled: n });
      },
    },
    {
      name: 'put', summary: 'create a queue or change its settings', usage: '<queue> [--max-concurrency N] [--rate R] [--weight W]',
      options: {
        'max-concurrency': { type: 'string', description: 'most jobs dispatched or running at once' },
        rate: { type: 'string', description: 'dispatches per second, 0 for unlimited' },
        weight: { type: 'string', description: 'share when contended, 1..1000' },
      },
      async run(ctx) {
        const q = await ctx.client.queues.put(required(ctx.args, 0, 'queue'), {
          maxConcurrency: integer(str(ctx, 'max-concurrency'), 'max-concurrency'),
          rateLimitPerSecond: number(str(ctx, 'rate'), 'rate'), weight: integer(str(ctx, 'weight'), 'weight'),
        });
        print(ctx.out, [row(q)], columns, q);
      },
    },
  ],
};
