import t from 'tap';
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { repoRoot } from '../helpers/processes.js';
import { startPlatform, waitFor } from '../helpers/platform.js';

const run = promisify(execFile);
const promDir = join(repoRoot, 'deploy/prometheus');
const grafanaDir = join(repoRoot, 'deploy/grafana');

t.test('alert rules pass promtool check and their unit tests', async (t) => {
  const check = await run('promtool', ['check', 'rules', join(promDir, 'alerts.yml')]).catch((e: Error & { stdout?: string; stderr?: string }) => {
    throw new Error(`promtool check rules failed (is the Debian package "prometheus" installed?): ${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}`);
  });
  t.match(check.stdout, /SUCCESS: \d+ rules found/);
  const unit = await run('promtool', ['test', 'rules', 'alerts.test.yml'], { cwd: promDir });
  t.match(unit.stdout + unit.stderr, /SUCCESS/);
  const rules = readFileSync(join(promDir, 'alerts.yml'), 'utf8');
  const tests = readFileSync(join(promDir, 'alerts.test.yml'), 'utf8');
  for (const [, name] of rules.matchAll(/- alert: (\w+)/g)) {
    t.ok(tests.includes(`alertname: ${name}`), `${name} has a unit test`);
  }
  for (const name of ['HighJobFailureRate', 'ControllerDown', 'QueueBacklogWarning', 'QueueBacklogCritical',
    'HighDispatchLatency', 'NoJobsProcessed', 'JobProcessingStalled', 'HighGrpcErrorRate', 'ServiceDown', 'HighTokenSpend']) {
    t.ok(rules.includes(`- alert: ${name}`), `the operations guides' ${name} is there`);
  }
});

t.test('every metric a rule or dashboard names is one the services export', async (t) => {
  const p = await startPlatform(t, { workers: 1 });
  const c = p.client();
  await c.submitAndWait({ type: 'echo' }, { timeoutMs: 20_000 });
  await c.submitAndWait({ type: 'fail', input: { code: 'X' } }, { timeoutMs: 20_000 });
  const exported = new Set<string>(['up']);
  await waitFor(async () => {
    for (const name of ['auth', 'job-0', 'scheduler-0', 'worker-0']) {
      for (const [, metric, type] of (await p.metrics(name)).matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
        exported.add(metric!);
        if (type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) exported.add(metric + s);
      }
    }
    return exported.has('aijob_completed_total');
  }, 10_000, 'metrics');

  const sources: [string, string][] = [['deploy/prometheus/alerts.yml', readFileSync(join(promDir, 'alerts.yml'), 'utf8')]];
  for (const f of readdirSync(grafanaDir).filter((x) => x.endsWith('.json'))) {
    const d = JSON.parse(readFileSync(join(grafanaDir, f), 'utf8')) as { panels: { targets: { expr: string }[] }[] };
    t.ok(d.panels.length > 0, `${f} has panels`);
    sources.push([`deploy/grafana/${f}`, d.panels.flatMap((p) => p.targets.map((x) => x.expr)).join('\n')]);
  }
  t.ok(sources.length >= 6, 'rules and five dashboards');
  for (const [file, text] of sources) {
    const names = new Set([...text.matchAll(/\b((?:aijob|controller|worker|ai_llm|grpc_server|process)_[a-z0-9_]+)\b/g)].map((m) => m[1]!));
    for (const n of names) t.ok(exported.has(n), `${file}: ${n} is exported`);
  }
});
