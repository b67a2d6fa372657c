// The prod worker HPA scales on a metric the Prometheus adapter serves, built from a metric
// the scheduler exports, for the queues those workers serve; promtool evaluates the query
// the adapter would run for the HPA.
import t from 'tap';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { build, documents, find, readText, type K8s } from './manifest-files.js';

const run = promisify(execFile);
const prod = build('deploy/k8s/overlays/prod');
const hpa = find(prod, 'HorizontalPodAutoscaler', 'aijob-worker');
const external = (hpa['spec']['metrics'] as K8s[]).filter((m) => m['type'] === 'External').map((m) => m['external']);
const adapter = documents(['deploy/prometheus-adapter/values.yaml'])[0]!.obj;
const rules = adapter['rules']['external'] as K8s[];
const ruleFor = (name: string) => rules.find((r) => (r['name']['as'] ?? r['name']['matches']) === name);
const seriesOf = (r: K8s) => /^(\w+)\{/.exec(r['seriesQuery'])?.[1];
const namespace = documents(['deploy/k8s/base/kustomization.yaml'])[0]!.obj['namespace'] as string;

t.test('the HPA\'s external metric is an adapter rule over a metric the scheduler exports', async (t) => {
  t.equal(adapter['rules']['default'], false, 'only the rules written here');
  t.ok(external.length >= 1, 'prod scales on an external metric');
  for (const e of external) {
    const rule = ruleFor(e['metric']['name']);
    t.ok(rule, `the adapter serves ${e['metric']['name']}`);
    if (!rule) continue;
    const series = seriesOf(rule)!;
    t.ok(new RegExp(rule['name']['matches']).test(series), `the rule renames the series it finds (${series})`);
    t.ok(rule['resources']['overrides']['namespace'], 'namespaced: the HPA sees its own namespace only');
    t.match(rule['metricsQuery'], /<<\.Series>>\{<<\.LabelMatchers>>\}/, 'the HPA\'s selector reaches the query');
    // The metric and its labels as the code registers them.
    const src = readText('services/scheduler/src/controller.ts');
    const m = new RegExp(`gauge\\('${series}', '[^']*', \\[([^\\]]*)\\]`).exec(src);
    t.ok(m, `services/scheduler registers the gauge ${series}`);
    const labels = [...(m?.[1] ?? '').matchAll(/'(\w+)'/g)].map((x) => x[1]);
    for (const k of Object.keys(e['metric']['selector']?.matchLabels ?? {})) t.ok(labels.includes(k), `${series} has the label ${k}`);
  }
});

t.test('the HPA counts the backlog of the queues its workers serve', async (t) => {
  const queues = String(find(prod, 'ConfigMap', 'aijob-worker')['data']['WORKER_QUEUES']).split(',').map((q) => q.trim());
  const selector = external.find((e) => e['metric']['name'] === 'aijob_queue_depth')?.['metric']['selector'];
  const selected = selector?.matchLabels?.queue ? [selector.matchLabels.queue]
    : (selector?.matchExpressions ?? []).find((x: K8s) => x['key'] === 'queue' && x['operator'] === 'In')?.['values'];
  t.same([...(selected ?? [])].sort(), [...queues].sort(), `queue selector = WORKER_QUEUES (${queues.join(',')})`);
});

t.test('the query the adapter runs for the HPA returns that queue\'s backlog in its namespace', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'aijob-adapter-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const e = external.find((x) => x['metric']['name'] === 'aijob_queue_depth')!;
  const rule = ruleFor('aijob_queue_depth')!;
  const matchers = [`namespace="${namespace}"`, ...Object.entries(e['metric']['selector']['matchLabels'] as Record<string, string>).map(([k, v]) => `${k}="${v}"`)];
  const query = String(rule['metricsQuery']).replace('<<.Series>>', seriesOf(rule)!).replace('<<.LabelMatchers>>', matchers.join(',')).replace(/<<\.GroupBy>>/g, '');
  writeFileSync(join(dir, 'empty.yml'), 'groups: []\n');
  writeFileSync(join(dir, 'adapter.test.yml'), stringify({
    rule_files: ['empty.yml'], evaluation_interval: '1m',
    tests: [{
      interval: '1m',
      input_series: [
        // Only the leader exports the gauge; a standby's series is absent, not zero.
        { series: `aijob_queue_depth{namespace="${namespace}",queue="default",pod="aijob-scheduler-a"}`, values: '120x5' },
        { series: `aijob_queue_depth{namespace="${namespace}",queue="gpu",pod="aijob-scheduler-a"}`, values: '900x5' },
        { series: 'aijob_queue_depth{namespace="staging",queue="default",pod="aijob-scheduler-x"}', values: '5000x5' },
      ],
      promql_expr_test: [{ expr: query, eval_time: '3m', exp_samples: [{ labels: '{}', value: 120 }] }],
    }],
  }));
  const out = await run('promtool', ['test', 'rules', 'adapter.test.yml'], { cwd: dir }).catch((err: { stdout?: string; message: string }) => ({ stdout: err.stdout ?? err.message }));
  t.match(out.stdout, /SUCCESS/, `${query} = the default queue's 120 waiting jobs`);
});
