// The README's prerequisites are the ones the manifests are written for: one Prometheus
// stack (kube-prometheus-stack, release "prometheus") whose labels, ServiceAccount, pod
// labels and certificate paths the monitors, policies and adapter use; the CloudNativePG
// operator where the NetworkPolicy admits it; the collector the services and the mesh
// send to; the pinned NATS chart; and Postgres ready before its Secret is read.
import t from 'tap';
import { build, documents, find, ofKind, readText, type K8s } from './manifest-files.js';

const base = build('deploy/k8s/base');
const istio = build('istio');
const readme = readText('README.md');
const deployment = readme.slice(readme.indexOf('## Deployment'), readme.indexOf('\n## ', readme.indexOf('## Deployment') + 1));
const stack = documents(['deploy/kube-prometheus-stack/values.yaml'])[0]!.obj;
const adapter = documents(['deploy/prometheus-adapter/values.yaml'])[0]!.obj;
/** `helm upgrade --install <release> <chart> -n <namespace> ... -f <values>` lines of the README's Deployment section. */
function helmInstall(chart: string): { release: string; namespace: string; values?: string; version?: string } | undefined {
  const line = deployment.split('\n').find((l) => new RegExp(`helm upgrade --install \\S+ ${chart.replace('/', '\\/')}\\s`).test(l));
  if (!line) return undefined;
  return {
    release: /--install (\S+)/.exec(line)![1]!, namespace: /-n (\S+)/.exec(line)?.[1] ?? 'default',
    values: /-f (\S+)/.exec(line)?.[1], version: /--version (\S+)/.exec(line)?.[1],
  };
}

t.test('kube-prometheus-stack, installed as the README says, selects and is allowed what the manifests expect', async (t) => {
  const kps = helmInstall('prometheus-community/kube-prometheus-stack');
  t.ok(kps, 'the README installs kube-prometheus-stack');
  t.equal(kps?.values, 'deploy/kube-prometheus-stack/values.yaml');
  const monitors = [...ofKind(base, 'ServiceMonitor'), ...ofKind(base, 'PodMonitor'), ...ofKind(base, 'PrometheusRule')];
  t.ok(monitors.length >= 4);
  for (const m of monitors) t.equal(m['metadata']['labels']['release'], kps?.release, `${m['kind']} ${m['metadata']['name']}: release: ${kps?.release}, what the chart selects`);
  const sa = stack['prometheus']['serviceAccount']['name'];
  const principal = `cluster.local/ns/${kps?.namespace}/sa/${sa}`;
  const scrape = find(istio, 'AuthorizationPolicy', 'prometheus-scrape');
  t.same(scrape['spec']['rules'].flatMap((r: K8s) => r['from'].flatMap((f: K8s) => f['source']['principals'])), [principal], `Prometheus's identity: ${principal}`);
  // NetworkPolicies admit Prometheus by namespace and the label the operator gives its pods.
  const fromPrometheus = ofKind(base, 'NetworkPolicy').flatMap((p) => ((p['spec']['ingress'] ?? []) as K8s[]).flatMap((r) => (r['from'] ?? []) as K8s[]))
    .filter((peer) => peer['podSelector']?.matchLabels?.['app.kubernetes.io/name'] === 'prometheus');
  t.ok(fromPrometheus.length >= 6, 'every scraped workload admits Prometheus');
  for (const peer of fromPrometheus) {
    t.equal(peer['namespaceSelector']?.matchLabels?.['kubernetes.io/metadata.name'], kps?.namespace, `from the namespace ${kps?.namespace}`);
    t.same(Object.keys(peer['podSelector']['matchLabels']), ['app.kubernetes.io/name'], 'by the operator\'s pod label alone');
  }
});

t.test('Prometheus scrapes through the mesh with the certificates its sidecar writes', async (t) => {
  const spec = stack['prometheus']['prometheusSpec'];
  const mount = (spec['volumeMounts'] as K8s[]).find((m) => m['name'] === 'istio-certs')!;
  t.ok((spec['volumes'] as K8s[]).some((v) => v['name'] === 'istio-certs'), 'the certificate volume');
  t.equal(spec['podMetadata']['labels']['sidecar.istio.io/inject'], 'true', 'a sidecar in a namespace without injection');
  const ann = spec['podMetadata']['annotations'];
  const output = /OUTPUT_CERTS: (\S+)/.exec(ann['proxy.istio.io/config'])![1];
  t.same(JSON.parse(ann['sidecar.istio.io/userVolumeMount']), [{ name: 'istio-certs', mountPath: output }], 'the sidecar writes its certificates into the shared volume');
  t.equal(ann['traffic.sidecar.istio.io/includeOutboundIPRanges'], '', 'and carries none of Prometheus\'s traffic');
  const sm = find(base, 'ServiceMonitor', 'aijob');
  for (const e of sm['spec']['endpoints'] as K8s[]) {
    t.equal(e['scheme'], 'https');
    for (const f of ['caFile', 'certFile', 'keyFile']) t.ok(String(e['tlsConfig'][f]).startsWith(mount['mountPath']), `${f} under ${mount['mountPath']}`);
  }
});

t.test('the adapter asks that Prometheus; Grafana loads the dashboards ConfigMap', async (t) => {
  const kps = helmInstall('prometheus-community/kube-prometheus-stack')!;
  const ad = helmInstall('prometheus-community/prometheus-adapter');
  t.equal(ad?.values, 'deploy/prometheus-adapter/values.yaml');
  t.equal(ad?.namespace, kps.namespace, 'beside it');
  // kube-prometheus-stack names the Prometheus Service and ServiceAccount alike, <fullname>-prometheus.
  t.equal(new URL(adapter['prometheus']['url']).hostname, `${stack['prometheus']['serviceAccount']['name']}.${kps.namespace}.svc`);
  t.equal(adapter['prometheus']['port'], 9090);
  const sidecar = stack['grafana']['sidecar']['dashboards'];
  const cm = find(base, 'ConfigMap', 'aijob-grafana-dashboards');
  t.equal(cm['metadata']['labels'][sidecar['label']], sidecar['labelValue'], 'the sidecar\'s label');
  t.equal(sidecar['searchNamespace'], 'ALL', 'looked for outside the monitoring namespace');
});

t.test('CloudNativePG, NATS and the collector: where the manifests expect them', async (t) => {
  const cnpg = helmInstall('cnpg/cloudnative-pg');
  const operatorPeer = find(base, 'NetworkPolicy', 'postgres')['spec']['ingress']
    .flatMap((r: K8s) => r['from']).find((p: K8s) => p['namespaceSelector'] && !p['podSelector']);
  t.equal(cnpg?.namespace, operatorPeer?.namespaceSelector.matchLabels['kubernetes.io/metadata.name'], 'the operator runs where the postgres NetworkPolicy admits it');
  const nats = helmInstall('nats/nats');
  t.ok(nats?.version, 'the NATS chart version is pinned');
  t.match(readText('deploy/nats/values.yaml'), `chart version ${nats?.version}`, 'the one the values are written for');
  const wait = deployment.indexOf('wait --for=condition=Ready cluster/aijob-pg');
  t.ok(wait > 0, 'the README waits for the Postgres cluster');
  t.ok(wait < deployment.indexOf('secret aijob-pg-app'), 'before reading its Secret');
  t.ok(deployment.indexOf('create secret generic aijob-secrets') < deployment.indexOf('helm upgrade --install nats'), 'NATS after the Secret its users\' passwords are in');
  const endpoint = new URL(find(base, 'ConfigMap', 'aijob-common')['data']['OTEL_EXPORTER_OTLP_ENDPOINT']);
  const [service, namespace] = endpoint.hostname.split('.');
  const prose = deployment.replace(/\s+/g, ' ');
  t.match(prose, `\`${service}\` in the namespace \`${namespace}\``, `the README asks for the collector ${service}.${namespace}`);
  t.match(prose, `on port ${endpoint.port}`);
  t.match(deployment, 'istioctl install -f istio/install/mesh-config.yaml', 'Istio with the mesh config');
});
