import t from 'tap';
import { JobState } from '@aijob/sdk';
import { cli, cliStarted } from '../helpers/cli.js';
import { startPlatform, waitFor } from '../helpers/platform.js';
import { freePort } from '../helpers/nats-server.js';

interface JobJson { id: string; state: string; queue: string; error?: { code: string } }
const far = new Date(Date.now() + 24 * 3_600_000);
const parse = <T>(r: { stdout: string }): T => JSON.parse(r.stdout) as T;
/** The state column of `jobs watch` lines ("<time>  RUNNING    attempt 1"). */
const watchStates = (out: string) => [...out.matchAll(/^\S+Z {2}(\w+)\s+attempt/gm)].map((m) => m[1]);

t.test('aijob jobs watch, cancel and retry; dlq list; queue clear; usage report', async (t) => {
  const p = await startPlatform(t, { workers: 1, serviceEnv: { worker: { WORKER_QUEUES: 'default,dl' } } });
  const admin = p.client();

  t.test('jobs watch follows a job to its end; exit 8 unless it succeeded', async (t) => {
    const later = await admin.submit({ type: 'echo', runAt: far });
    const watching = cliStarted(p, ['jobs', 'watch', later.id]);
    await waitFor(() => watchStates(watching.stdout()).length === 1, 30_000, 'the first line');
    await admin.cancel(later.id, 'watched');
    const watched = await watching.done;
    t.equal(watched.code, 8, 'ended CANCELLED: exit 8');
    t.same(watchStates(watched.stdout), ['QUEUED', 'CANCELLED'], 'a line per change, until the end');
    const failing = await admin.submitAndWait({ type: 'fail', input: { code: 'WATCHED' }, maxAttempts: 1 });
    const failed = await cli(p, ['jobs', 'watch', failing.id]);
    t.equal(failed.code, 8, 'a failed job: exit 8');
    t.match(failed.stdout, /FAILED\s+attempt 1\nerror: WATCHED: failed on request/);
    const ok = await admin.submitAndWait({ type: 'echo', input: { w: 1 } });
    const succeeded = await cli(p, ['jobs', 'watch', ok.id]);
    t.equal(succeeded.code, 0, 'a job that succeeded: exit 0');
    t.match(succeeded.stdout, /SUCCEEDED\s+attempt 1\noutput: \{"w":1\}/);
    const json = await cli(p, ['jobs', 'watch', ok.id, '--json']);
    t.same([json.code, parse<JobJson>(json).state], [0, 'SUCCEEDED'], '--json prints the final record');
  });

  t.test('jobs cancel and jobs retry', async (t) => {
    const later = await admin.submit({ type: 'echo', runAt: far });
    const cancelled = await cli(p, ['jobs', 'cancel', later.id, '--reason', 'wrong input']);
    t.equal(cancelled.code, 0);
    t.match(cancelled.stdout, new RegExp(`^ID\\s+STATE.*\\n${later.id}\\s+CANCELLED\\s+default\\s+echo`));
    const twice = await cli(p, ['jobs', 'cancel', later.id, '--json']);
    t.same([twice.code, parse<JobJson>(twice).state], [0, 'CANCELLED'], 'cancelling again: exit 0, still CANCELLED');
    const reopened = await cli(p, ['jobs', 'retry', later.id, '--json']);
    t.same([reopened.code, parse<JobJson>(reopened).state], [0, 'QUEUED'], 'a cancelled job reopens');

    const flaky = await admin.submitAndWait({ type: 'fail', input: { attempts: 1 }, maxAttempts: 1 });
    t.equal(flaky.state, JobState.JOB_STATE_FAILED);
    const retried = await cli(p, ['jobs', 'retry', flaky.id, '--wait']);
    t.equal(retried.code, 0, 'retry --wait: exit 0 once the retried job succeeds');
    t.equal(watchStates(retried.stdout).at(-1), 'SUCCEEDED');
    const done = await cli(p, ['jobs', 'retry', flaky.id]);
    t.equal(done.code, 7, 'retrying a SUCCEEDED job: failed precondition, exit 7');
    t.match(done.stderr, /FAILED_PRECONDITION: .*only FAILED or CANCELLED/);
    t.equal((await cli(p, ['jobs', 'cancel', flaky.id])).code, 7, 'cancelling a SUCCEEDED job: exit 7');
  });

  t.test('dlq list with filters', async (t) => {
    for (const code of ['E_ONE', 'E_TWO']) await admin.submitAndWait({ type: 'fail', queue: 'dl', input: { code }, maxAttempts: 1 });
    const table = await cli(p, ['dlq', 'list', '--queue', 'dl']);
    t.equal(table.code, 0);
    const lines = table.stdout.trim().split('\n');
    t.match(lines[0], /^ID\s+STATE\s+QUEUE\s+TYPE\s+ATTEMPT\s+CREATED\s+ERROR$/);
    t.equal(lines.length, 3, 'a row per dead letter of the queue');
    t.match(lines[1], /FAILED\s+dl\s+fail\s+1\/1 .*E_TWO: failed on request$/, 'latest failure first');
    const one = parse<JobJson[]>(await cli(p, ['dlq', 'list', '--code', 'E_ONE', '--json']));
    t.same(one.map((j) => [j.state, j.queue, j.error?.code]), [['FAILED', 'dl', 'E_ONE']]);
    t.equal(parse<JobJson[]>(await cli(p, ['dlq', 'list', '--limit', '1', '--json'])).length, 1, '--limit');
    t.equal(parse<JobJson[]>(await cli(p, ['dlq', 'list', one[0]!.id, '--json']))[0]?.id, one[0]!.id, 'by id');
  });

  t.test('queue clear cancels the waiting jobs', async (t) => {
    await admin.submitMany(Array.from({ length: 3 }, () => ({ type: 'echo', queue: 'clearme', runAt: far })));
    const cleared = await cli(p, ['queue', 'clear', 'clearme', '--states', 'queued', '--reason', 'maintenance']);
    t.equal(cleared.code, 0);
    t.match(cleared.stdout, /^CANCELLED\n3\n$/);
    t.same(parse(await cli(p, ['queue', 'clear', 'clearme', '--json'])), { cancelled: 0 }, 'nothing left to clear');
    const jobs = parse<JobJson[]>(await cli(p, ['jobs', 'list', '--queue', 'clearme', '--json']));
    t.same(jobs.map((j) => j.state), ['CANCELLED', 'CANCELLED', 'CANCELLED']);
    t.equal((await cli(p, ['queue', 'clear', 'clearme', '--states', 'running'])).code, 2, 'only queued or retry_wait');
  });

  t.test('usage report over --from/--to, as a table and as JSON', async (t) => {
    await p.sql()`INSERT INTO usage (job_id, attempt, workspace_id, queue, api_key_id, provider, model, prompt_tokens, completion_tokens, cost_usd, at)
      SELECT id, 1, workspace_id, queue, 'key_bootstrap', 'openai', 'gpt-4o-mini', 100, 50, 0.25, '2026-03-10T12:00:00Z' FROM jobs ORDER BY id LIMIT 2`;
    await p.sql()`INSERT INTO usage (job_id, attempt, workspace_id, queue, api_key_id, provider, model, prompt_tokens, completion_tokens, cost_usd, at)
      SELECT id, 1, workspace_id, queue, 'key_bootstrap', 'anthropic', 'claude-haiku', 10, 5, 1.5, '2026-04-10T12:00:00Z' FROM jobs ORDER BY id DESC LIMIT 1`;
    const range = ['--from', '2026-03-01T00:00:00Z', '--to', '2026-04-01T00:00:00Z'];
    const table = await cli(p, ['usage', 'report', ...range, '--group-by', 'provider,model', '--format', 'table']);
    t.equal(table.code, 0);
    t.match(table.stdout, /^PROVIDER\s+MODEL\s+JOBS\s+CALLS\s+PROMPT_TOKENS\s+COMPLETION_TOKENS\s+COST_USD\nopenai\s+gpt-4o-mini\s+2\s+2\s+200\s+100\s+0\.5\n/);
    t.notMatch(table.stdout, /anthropic/, 'rows outside the range are left out');
    t.match(table.stdout, /2026-03-01T00:00:00\.000Z \.\. 2026-04-01T00:00:00\.000Z: \$0\.5000 total/);
    const json = parse<{ rows: { group: Record<string, string>; costUsd: number }[]; totals: { jobs: number; costUsd: number } }>(
      await cli(p, ['usage', 'report', '--from', '2026-03-01T00:00:00Z', '--to', '2026-05-01T00:00:00Z', '--group-by', 'provider', '--format', 'json']));
    t.same(json.rows.map((r) => [r.group['provider'], r.costUsd]), [['anthropic', 1.5], ['openai', 0.5]], 'JSON: a row per group, costliest first');
    t.same([json.totals.jobs, json.totals.costUsd], [3, 2]);
    const totals = parse<{ totals: { calls: number } }>(await cli(p, ['usage', 'report', '--from', '2026-04-01T00:00:00Z', '--to', '2026-05-01T00:00:00Z', '--json']));
    t.equal(totals.totals.calls, 1, 'no grouping: the totals');
    t.equal((await cli(p, ['usage', 'report', '--from', '2026-05-01T00:00:00Z', '--to', '2026-04-01T00:00:00Z'])).code, 2, 'from after to: exit 2');
  });

  t.test('every documented exit code that can happen', async (t) => {
    const ws = await admin.admin.createWorkspace('cli-exit', { maxPending: 1 });
    const { apiKey: writer } = await admin.admin.createApiKey({ workspaceId: ws.id, scopes: ['jobs:read', 'jobs:write'] });
    const { apiKey: reader } = await admin.admin.createApiKey({ workspaceId: ws.id, scopes: ['jobs:read'] });
    t.equal((await cli(p, ['jobs', 'list'])).code, 0, '0: ok');
    const io = await cli(p, ['jobs', 'submit', 'echo', '--input-file', '/nonexistent/input.json']);
    t.equal(io.code, 1, '1: any other error');
    t.match(io.stderr, /ENOENT/);
    t.equal((await cli(p, ['jobs', 'list', '--limit', 'ten'])).code, 2, '2: usage');
    t.equal((await cli(p, ['jobs', 'submit', 'echo', '--priority', '5000'])).code, 2, '2: invalid argument');
    t.equal((await cli(p, ['jobs', 'view', '00000000-0000-7000-8000-000000000000'])).code, 3, '3: not found');
    t.equal((await cli(p, ['jobs', 'submit', 'echo'], { AIJOB_API_KEY: reader })).code, 4, '4: denied (scope)');
    t.equal((await cli(p, ['jobs', 'list'], { AIJOB_API_KEY: 'aijob_wrong_' + 'x'.repeat(30) })).code, 4, '4: unauthenticated');
    await p.client({ apiKey: writer }).submit({ type: 'echo', runAt: far });
    const full = await cli(p, ['jobs', 'submit', 'echo'], { AIJOB_API_KEY: writer });
    t.equal(full.code, 5, '5: resource exhausted');
    t.match(full.stderr, /RESOURCE_EXHAUSTED: .*\(retry in \d+ s\)/, 'with the retry delay');
    const down = await cli(p, ['jobs', 'list', '--addr', `127.0.0.1:${await freePort()}`]);
    t.equal(down.code, 6, '6: unavailable');
    t.match(down.stderr, /UNAVAILABLE/);
    t.equal((await cli(p, ['jobs', 'cancel', (await admin.submitAndWait({ type: 'echo' })).id])).code, 7, '7: failed precondition');
    t.equal((await cli(p, ['jobs', 'submit', 'fail', '--max-attempts', '1', '--wait'])).code, 8, '8: the job did not succeed');
  });
});
