// Writes the Kubernetes forms of the rule files in deploy/prometheus (a PrometheusRule) and of
// deploy/grafana/*.json (a ConfigMap for Grafana's dashboard sidecar) into deploy/k8s/base.
// `npm run deploy:sync` after changing either; a test fails when they drift.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, stringify } from 'yaml';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const labels = { 'app.kubernetes.io/name': 'aijob' };
const note = (src) => `# Generated from ${src} by \`npm run deploy:sync\`; edit the source, not this file.\n`;

// Rule files are the YAML files with `groups` (promtool's test files have `tests` instead).
const promDir = join(root, 'deploy/prometheus');
const groups = readdirSync(promDir).filter((f) => /\.ya?ml$/.test(f)).sort()
  .map((f) => parse(readFileSync(join(promDir, f), 'utf8')))
  .flatMap((doc) => (Array.isArray(doc?.groups) ? doc.groups : []));
writeFileSync(join(root, 'deploy/k8s/base/prometheus-rule.yaml'), note('deploy/prometheus/*.yml') + stringify({
  apiVersion: 'monitoring.coreos.com/v1', kind: 'PrometheusRule',
  metadata: { name: 'aijob', labels: { ...labels, release: 'prometheus' } },
  spec: { groups },
}, { lineWidth: 0 }));

const dir = join(root, 'deploy/grafana');
const data = Object.fromEntries(readdirSync(dir).filter((f) => f.endsWith('.json')).sort()
  .map((f) => [`aijob-${f}`, readFileSync(join(dir, f), 'utf8')]));
writeFileSync(join(root, 'deploy/k8s/base/grafana-dashboards.yaml'), note('deploy/grafana/*.json') + stringify({
  apiVersion: 'v1', kind: 'ConfigMap',
  metadata: { name: 'aijob-grafana-dashboards', labels: { ...labels, grafana_dashboard: '1' } },
  data,
}, { lineWidth: 0 }));
