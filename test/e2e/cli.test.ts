import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cli } from '../helpers/cli.js';
import { startPlatform } from '../helpers/platform.js';

t.test('the aijob CLI drives the platform, for humans and for scripts', async (t) => {
  const p = await startPlatform(t, { workers: 1 });

  const help = await cli(p, ['--help']);
  t.equal(help.code, 0);
  for (const g of ['jobs', 'dlq', 'queue', 'usage', 'keys', 'workspaces', 'audit']) t.match(help.stdout, new RegExp(`\\n  ${g} `), `help lists ${g}`);
  t.match((await cli(p, ['dlq', 'retry', '--help'])).stdout, /--model/, 'every command has --help');
  const unknown = await cli(p, ['jobs', 'explode']);
  t.equal(unknown.code, 2, 'unknown command: usage error');

  const sub = await cli(p, ['jobs', 'submit', 'echo', '--input', '{"x":1}', '--wait']);
  t.equal(sub.code, 0, 'submit --wait succeeds');
  t.match(sub.stdout, /SUCCEEDED/);
  t.match(sub.stdout, /output: \{"x":1\}/);

  const failed = await cli(p, ['jobs', 'submit', 'fail', '--input', '{"code":"BOOM"}', '--max-attempts', '1', '--wait', '--json']);
  t.equal(failed.code, 8, 'a job that fails: exit 8');
  const failedJob = JSON.parse(failed.stdout) as { id: string; state: string; error: { code: string } };
  t.equal(failedJob.state, 'FAILED');
  t.equal(failedJob.error.code, 'BOOM');

  const listed = await cli(p, ['jobs', 'list', '--status', 'failed', '--queue', 'default', '--limit', '100', '--json']);
  t.equal(listed.code, 0);
  t.same((JSON.parse(listed.stdout) as { id: string }[]).map((j) => j.id), [failedJob.id], '--json parses; filters apply');
  const table = await cli(p, ['jobs', 'list']);
  t.match(table.stdout, /^ID\s+STATE\s+QUEUE\s+TYPE/, 'a human table by default');

  const view = await cli(p, ['jobs', 'view', failedJob.id]);
  t.match(view.stdout, /error\s+BOOM: failed on request/);
  t.equal((await cli(p, ['jobs', 'view', '00000000-0000-7000-8000-000000000000'])).code, 3, 'not found: exit 3');
  const bad = await cli(p, ['jobs', 'submit', 'echo', '--queue', 'Bad Queue']);
  t.equal(bad.code, 2, 'invalid argument: exit 2');
  t.match(bad.stderr, /queue: must be/, 'names the field');
  t.equal((await cli(p, ['jobs', 'list'], { AIJOB_API_KEY: 'aijob_wrong_' + 'x'.repeat(30) })).code, 4, 'bad key: exit 4');

  const stats = JSON.parse((await cli(p, ['dlq', 'stats', '--json'])).stdout) as { total: number };
  t.equal(stats.total, 1);
  const other = JSON.parse((await cli(p, ['jobs', 'submit', 'fail', '--input', '{"code":"BANG"}', '--max-attempts', '1', '--wait', '--json'])).stdout) as { id: string };
  const one = await cli(p, ['dlq', 'retry', other.id, '--set', 'attempts=0']);
  t.equal(one.code, 0, 'dlq retry <id>');
  t.match(one.stdout, /retried 1 jobs\n(.*\n)*1\/1 finished: 1 succeeded/, 'that one job, followed to its end');
  const left = JSON.parse((await cli(p, ['dlq', 'list', '--json'])).stdout) as { id: string }[];
  t.same(left.map((j) => j.id), [failedJob.id], 'the other dead letter stays');
  const missing = await cli(p, ['dlq', 'retry', other.id, '--json']);
  t.equal(missing.code, 3, 'an id that is no dead letter (any more): exit 3');
  t.same(JSON.parse(missing.stdout), { retried: 0, jobIds: [], notDeadLetters: [other.id] });
  t.match(missing.stderr, new RegExp(`not dead letters .*${other.id}`));
  const retried = await cli(p, ['dlq', 'retry', '--code', 'BOOM', '--set', 'attempts=0']);
  t.equal(retried.code, 0);
  t.match(retried.stdout, /retried 1 jobs\n(.*\n)*1\/1 finished: 1 succeeded/, 'live progress until the retried job ends');
  t.equal((await cli(p, ['dlq', 'purge', '--all'])).code, 2, 'purge asks for --yes');

  t.match((await cli(p, ['queue', 'pause', 'default'])).stdout, /default\s+paused/);
  t.match((await cli(p, ['queue', 'resume', 'default'])).stdout, /default\s+active/);
  const queues = JSON.parse((await cli(p, ['queue', 'list', '--json'])).stdout) as { name: string }[];
  t.ok(queues.some((q) => q.name === 'default'));
  t.match((await cli(p, ['queue', 'stats'])).stdout, /PENDING\s+WORKERS/);

  const key = await cli(p, ['keys', 'create', '--scopes', 'jobs:read', '--name', 'ci']);
  t.match(key.stdout, /API key \(shown only now\):\n {2}aijob_/);
  const keys = JSON.parse((await cli(p, ['keys', 'list', '--json'])).stdout) as { id: string; name: string }[];
  const ci = keys.find((k) => k.name === 'ci')!;
  t.equal((await cli(p, ['keys', 'revoke', ci.id])).code, 0);

  const ws = JSON.parse((await cli(p, ['workspaces', 'create', 'cli-team', '--rate-limit', '500', '--json'])).stdout) as { id: string };
  const pol = JSON.parse((await cli(p, ['workspaces', 'policy', ws.id, '--max-pending', '10', '--json'])).stdout) as { policy: { maxPending: number; rateLimitPerMinute: number } };
  t.same([pol.policy.maxPending, pol.policy.rateLimitPerMinute], [10, 500], 'policy fields given change, others stay');

  const audit = await cli(p, ['audit', 'list', '--action', 'key.revoke', '--json']);
  t.equal((JSON.parse(audit.stdout) as unknown[]).length, 1);

  await p.sql()`INSERT INTO usage (job_id, attempt, workspace_id, queue, api_key_id, provider, model, prompt_tokens, completion_tokens, cost_usd)
    SELECT id, 1, workspace_id, queue, 'key_bootstrap', 'openai', 'gpt-4o-mini', 100, 50, 0.25 FROM jobs LIMIT 2`;
  const report = await cli(p, ['usage', 'report', '--group-by', 'provider,model', '--format', 'csv', '--last-days', '1']);
  t.equal(report.code, 0);
  const lines = report.stdout.trim().split('\n');
  t.equal(lines[0], 'provider,model,jobs,calls,prompt_tokens,completion_tokens,cost_usd', 'CSV header');
  t.equal(lines.length, 2, 'a row per group');
  t.match(lines[1], /^openai,gpt-4o-mini,2,2,200,100,0\.5$/);

  const dir = mkdtempSync(join(tmpdir(), 'aijob-cli-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ addr: p.jobAddr, schedulerAddr: p.schedulerAddr, authAddr: p.authAddr, apiKey: p.apiKey }));
  const first = await cli(p, ['--addr', p.jobAddr, '--json', 'jobs', 'list', '--limit', '1'], { AIJOB_ADDR: '' });
  t.equal(first.code, 0, 'global options before the group');
  t.equal((JSON.parse(first.stdout) as unknown[]).length, 1);
  t.equal((await cli(p, ['--addr', p.jobAddr, 'jobs', 'explode'])).code, 2, 'and the command after them is still checked');

  const fromFile = await cli(p, ['jobs', 'list', '--config', join(dir, 'config.json')], { AIJOB_API_KEY: '', AIJOB_ADDR: '' });
  t.equal(fromFile.code, 0, 'settings from a config file');
});

t.test('the @aijob/cli package exports main and its exit codes', async (t) => {
  const pkg = await import('@aijob/cli') as { main: unknown; exitCodes: Record<string, number> };
  t.type(pkg.main, 'function', 'package.json main resolves to the built entry point');
  t.equal(pkg.exitCodes['jobFailed'], 8);
});
