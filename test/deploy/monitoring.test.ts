// The Kubernetes monitoring resources hold exactly what deploy/prometheus and
// deploy/grafana hold (`npm run deploy:sync` writes them), Prometheus finds every
// service, and every alert leads to a runbook in docs/operations.md.
import t from 'tap';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { repoRoot } from '../helpers/processes.js';
import { build, documents, find, ofKind, readText, type K8s } from './manifest-files.js';

const base = build('deploy/k8s/base');
const ruleFiles = readdirSync(join(repoRoot, 'deploy/prometheus')).filter((f) => /\.ya?ml$/.test(f)).sort()
  .map((f) => ({ file: f, doc: parse(readText(`deploy/prometheus/${f}`)) as K8s }))
  .filter((r) => Array.isArray(r.doc?.['groups']));
const groups = ruleFiles.flatMap((r) => r.doc['groups'] as K8s[]);
const alerts = groups.flatMap((g) => (g['rules'] as K8s[]).filter((r) => r['alert']));
const dashboards = readdirSync(join(repoRoot, 'deploy/grafana')).filter((f) => f.endsWith('.json')).sort();

t.test('the PrometheusRule holds the rule files of deploy/prometheus, group for group', async (t) => {
  t.ok(ruleFiles.length >= 1 && alerts.length >= 10, `${alerts.length} alerts in ${ruleFiles.map((r) => r.file).join(', ')}`);
  const rule = find(base, 'PrometheusRule', 'aijob');
  t.same(rule['spec']['groups'], groups, 'equal (run `npm run deploy:sync` after editing deploy/prometheus)');
});

t.test('the dashboards ConfigMap holds deploy/grafana/*.json byte for byte', async (t) => {
  t.ok(dashboards.length >= 1, `${dashboards.length} dashboards`);
  const cm = find(base, 'ConfigMap', 'aijob-grafana-dashboards');
  t.equal(cm['metadata']['labels']['grafana_dashboard'], '1', 'picked up by Grafana\'s dashboard sidecar');
  t.same(Object.keys(cm['data']).sort(), dashboards.map((f) => `aijob-${f}`));
  for (const f of dashboards) t.equal(cm['data'][`aijob-${f}`], readText(`deploy/grafana/${f}`), `${f} in sync`);
  for (const f of dashboards) t.doesNotThrow(() => JSON.parse(readText(`deploy/grafana/${f}`)), `${f} is JSON`);
});

t.test('the ServiceMonitor scrapes every Service\'s ops port, under the job names the alerts use', async (t) => {
  const sm = find(base, 'ServiceMonitor', 'aijob');
  t.same(sm['metadata']['labels']['release'], find(base, 'PrometheusRule', 'aijob')['metadata']['labels']['release'], 'one Prometheus picks up both');
  const selected = ofKind(base, 'Service').filter((s) => Object.entries(sm['spec']['selector']['matchLabels'] as Record<string, string>)
    .every(([k, v]) => s['metadata']['labels'][k] === v));
  t.same(selected.map((s) => s['metadata']['name']).sort(), ofKind(base, 'Service').map((s) => s['metadata']['name']).sort(), 'every Service');
  for (const e of sm['spec']['endpoints'] as K8s[]) {
    for (const s of selected) t.ok((s['spec']['ports'] as K8s[]).some((p) => p['name'] === e['port']), `${s['metadata']['name']} has port ${e['port']}`);
    t.equal(e['path'], '/metrics');
  }
  // PodMonitors name their job after a pod label (jobLabel), the value their selector fixes.
  const podJobs = ofKind(base, 'PodMonitor').map((m) => m['spec']['selector']['matchLabels'][m['spec']['jobLabel']] as string);
  t.same(podJobs.sort(), ['aijob-pg', 'nats'], 'NATS and Postgres are scraped as jobs nats and aijob-pg');
  const names = [...selected.map((s) => s['metadata']['name'] as string), ...podJobs];
  const matchers = alerts.flatMap((a) => [...String(a['expr']).matchAll(/\bjob\s*(=~|=)\s*"([^"]+)"/g)].map((m) => ({ alert: a['alert'], op: m[1], value: m[2]! })));
  t.ok(matchers.length >= 1, 'alerts select services by job');
  for (const m of matchers) {
    const re = new RegExp(`^(?:${m.op === '=' ? m.value.replace(/[.*+?^${}()|[\]\\]/g, '\\$&') : m.value})$`);
    t.ok(names.some((n) => re.test(n)), `${m.alert}: job ${m.op}"${m.value}" matches a scraped Service`);
  }
  const down = alerts.find((a) => a['alert'] === 'ServiceDown');
  if (down) {
    const m = /job\s*=~\s*"([^"]+)"/.exec(String(down['expr']));
    for (const n of selected.map((s) => s['metadata']['name'] as string)) t.ok(m && new RegExp(`^(?:${m[1]})$`).test(n), `ServiceDown watches ${n}`);
  }
});

t.test('PodMonitors reach the dependencies\' exporters, for the same Prometheus', async (t) => {
  const release = find(base, 'PrometheusRule', 'aijob')['metadata']['labels']['release'];
  const nats = documents(['deploy/nats/values.yaml'])[0]!.obj;
  const cluster = find(documents(['deploy/postgres/cluster.yaml']).map((d) => d.obj), 'Cluster', 'aijob-pg');
  const monitors = ofKind(base, 'PodMonitor');
  for (const m of monitors) t.equal(m['metadata']['labels']['release'], release, `${m['metadata']['name']}: picked up with the rules`);
  const natsMonitor = find(base, 'PodMonitor', 'nats');
  t.equal(nats['promExporter']['enabled'], true, 'the chart runs the exporter sidecar');
  t.equal(nats['promExporter']['podMonitor']['enabled'], false, 'and no PodMonitor of its own beside ours');
  t.same(natsMonitor['spec']['podMetricsEndpoints'].map((e: K8s) => e['port']), ['prom-metrics'], 'the sidecar\'s port name in the chart');
  t.equal(natsMonitor['spec']['selector']['matchLabels']['app.kubernetes.io/component'], 'nats', 'the servers, not nats-box');
  const pg = find(base, 'PodMonitor', 'aijob-pg');
  t.equal(pg['spec']['selector']['matchLabels']['cnpg.io/cluster'], cluster['metadata']['name']);
  t.equal(cluster['spec']['monitoring']['enablePodMonitor'], false, 'the operator makes no second PodMonitor');
  // The alerts' thresholds follow the cluster: one primary and instances - 1 replicas.
  const missing = alerts.find((a) => a['alert'] === 'PostgresReplicasMissing');
  t.match(String(missing?.['expr']), new RegExp(`< ${cluster['spec']['instances'] - 1}$`), 'replicas expected = instances - 1');
});

t.test('alerts on containers name the namespace and containers the manifests run', async (t) => {
  const containers = ofKind(base, 'Deployment').map((d) => d['spec']['template']['spec']['containers'][0]['name'] as string).sort();
  const namespace = documents(['deploy/k8s/base/kustomization.yaml'])[0]!.obj['namespace'];
  const onContainers = alerts.filter((a) => /\bcontainer_|kube_pod_container/.test(String(a['expr'])));
  t.ok(onContainers.length >= 2, onContainers.map((a) => a['alert']).join(', '));
  for (const a of onContainers) {
    const expr = String(a['expr']);
    const regexes = [...expr.matchAll(/container=~"([^"]+)"/g)].map((m) => m[1]!);
    t.ok(regexes.length >= 2, `${a['alert']}: usage and limit both select containers`);
    for (const r of regexes) {
      const re = new RegExp(`^(?:${r})$`);
      t.same(containers.filter((c) => re.test(c)), containers, `${a['alert']}: container=~"${r}" matches every service container`);
      t.notOk(re.test('istio-proxy'), `${a['alert']}: not the sidecars`);
    }
    for (const m of expr.matchAll(/namespace="([^"]+)"/g)) t.equal(m[1], namespace, `${a['alert']}: namespace ${namespace}`);
  }
  const down = String(alerts.find((a) => a['alert'] === 'ServiceDown')?.['expr']);
  for (const svc of ofKind(base, 'Service')) {
    t.match(down, `absent(up{job="${svc['metadata']['name']}"})`, `ServiceDown also fires when ${svc['metadata']['name']} has no target`);
  }
});

t.test('every alert has a runbook in docs/operations.md', async (t) => {
  const doc = readText('docs/operations.md');
  // GitHub's heading slugs (lower case, punctuation but - and _ dropped, spaces to -),
  // and explicit <a id="..."> anchors.
  const anchors = new Set([
    ...[...doc.matchAll(/^#{2,3} (.+)$/gm)].map((m) => m[1]!.toLowerCase().trim().replace(/[^\w\s-]/g, '').replace(/\s/g, '-')),
    ...[...doc.matchAll(/<a id="([\w-]+)"><\/a>/g)].map((m) => m[1]!),
  ]);
  for (const a of alerts) {
    t.match(doc, new RegExp(`\\b${a['alert']}\\b`), `${a['alert']} is named in docs/operations.md`);
    const url = String(a['annotations']?.['runbook_url'] ?? '');
    t.match(url, /docs\/operations\.md#/, `${a['alert']} links its runbook`);
    t.ok(anchors.has(url.split('#')[1]!), `${a['alert']}: #${url.split('#')[1]} is a heading of docs/operations.md`);
  }
});
