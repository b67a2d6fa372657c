import t from 'tap';
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parse } from 'yaml';
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
  for (const name of ['HighJobFailureRate', 'JobFailureRateCritical', 'ControllerDown', 'QueueBacklogWarning', 'QueueBacklogCritical',
    'HighDispatchLatency', 'NoJobsProcessed', 'JobProcessingStalled', 'HighGrpcErrorRate', 'ServiceDown', 'HighTokenSpend',
    'HighTokenUsage', 'HighLatency', 'HighCpuUsage', 'HighMemoryUsage', 'DatabaseConnectionsHigh', 'DependencyDown']) {
    t.ok(rules.includes(`- alert: ${name}`), `the operations guides' ${name} is there`);
  }
});

t.test('a broken rule fails its unit test (the promtool run is real)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'aijob-rules-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // The escalation threshold moved: the unit test of JobFailureRateCritical must notice.
  const rules = readFileSync(join(promDir, 'alerts.yml'), 'utf8').replace('/ sum(rate(aijob_completed_total[5m])) > 0.25', '/ sum(rate(aijob_completed_total[5m])) > 0.5');
  t.not(rules, readFileSync(join(promDir, 'alerts.yml'), 'utf8'), 'the rule was changed');
  writeFileSync(join(dir, 'alerts.yml'), rules);
  writeFileSync(join(dir, 'alerts.test.yml'), readFileSync(join(promDir, 'alerts.test.yml'), 'utf8'));
  const failed = await run('promtool', ['test', 'rules', 'alerts.test.yml'], { cwd: dir })
    .then(() => 'passed', (e: { stdout?: string; stderr?: string }) => `${e.stdout ?? ''}${e.stderr ?? ''}`);
  t.match(failed, /FAILED[\s\S]*JobFailureRateCritical/, 'promtool reports the alert that no longer fires');
});

/**
 * Metrics the rules take from other exporters (the services' own are checked against a
 * running platform below): CloudNativePG's default queries and collector, the NATS chart's
 * prometheus-nats-exporter (-prefix=nats, -varz, -jsz=all), cAdvisor and kube-state-metrics.
 */
const fromExporters: Record<string, string> = {
  cnpg_collector_up: 'CloudNativePG', cnpg_backends_total: 'CloudNativePG backends',
  cnpg_pg_settings_setting: 'CloudNativePG pg_settings', cnpg_pg_replication_lag: 'CloudNativePG pg_replication',
  cnpg_pg_replication_in_recovery: 'CloudNativePG pg_replication', cnpg_pg_replication_streaming_replicas: 'CloudNativePG pg_replication',
  cnpg_pg_stat_archiver_failed_count: 'CloudNativePG pg_stat_archiver', cnpg_pg_stat_archiver_seconds_since_last_archival: 'CloudNativePG pg_stat_archiver',
  nats_varz_connections: 'nats exporter varz', nats_varz_slow_consumers: 'nats exporter varz',
  nats_consumer_num_pending: 'nats exporter jsz', nats_server_total_message_bytes: 'nats exporter jsz', nats_server_max_storage: 'nats exporter jsz',
  container_cpu_usage_seconds_total: 'cAdvisor', container_memory_working_set_bytes: 'cAdvisor',
  kube_pod_container_resource_limits: 'kube-state-metrics',
};

t.test('every metric a rule takes from another exporter is one that exporter serves', async (t) => {
  const rules = readFileSync(join(promDir, 'alerts.yml'), 'utf8');
  const names = new Set([...rules.matchAll(/\b((?:cnpg|nats|container|kube)_[a-z0-9_]+)\b/g)].map((m) => m[1]!));
  t.ok(names.size >= 10, [...names].join(', '));
  for (const n of names) t.ok(fromExporters[n], `${n} comes from ${fromExporters[n] ?? 'no exporter we run'}`);
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
  // The Prometheus adapter's rules, which the prod worker HPA scales on.
  const adapter = parse(readFileSync(join(repoRoot, 'deploy/prometheus-adapter/values.yaml'), 'utf8')) as { rules: { external: { seriesQuery: string; metricsQuery: string }[] } };
  sources.push(['deploy/prometheus-adapter/values.yaml', adapter.rules.external.map((r) => `${r.seriesQuery}\n${r.metricsQuery}`).join('\n')]);
  t.ok(sources.length >= 7, 'rules, five dashboards and the adapter');
  for (const [file, text] of sources) {
    const names = new Set([...text.matchAll(/\b((?:aijob|controller|worker|ai_llm|grpc_server|process)_[a-z0-9_]+)\b/g)].map((m) => m[1]!));
    for (const n of names) t.ok(exported.has(n), `${file}: ${n} is exported`);
  }
});
