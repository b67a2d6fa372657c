// A second worker pool made as docs/operations.md says (Scaling workers) stays apart from
// the first where it must (Deployment selectors, HPA) and shares what it should
// (NetworkPolicies, metrics Service, the PodDisruptionBudget, WorkerService access); the
// example exception for in-cluster model servers opens exactly that path.
import t from 'tap';
import { meshAllows } from './authorization.js';
import { build, documents, find, ofKind, readText, type K8s } from './manifest-files.js';
import { allowed, type Endpoint } from './network-policy.js';

const base = build('deploy/k8s/base');
const istio = build('istio');
const doc = readText('docs/operations.md');
const selects = (selector: Record<string, string>, labels: Record<string, string>) => Object.entries(selector).every(([k, v]) => labels[k] === v);
const podLabels = (d: K8s): Record<string, string> => d['spec']['template']['metadata']['labels'];

/** The documented copy: new names and instance label, WORKER_QUEUES=gpu; everything else kept. */
function gpuPool(): K8s[] {
  const d = structuredClone(find(base, 'Deployment', 'aijob-worker'));
  const cm = structuredClone(find(base, 'ConfigMap', 'aijob-worker'));
  const hpa = structuredClone(find(base, 'HorizontalPodAutoscaler', 'aijob-worker'));
  d['metadata']['name'] = 'aijob-worker-gpu';
  for (const labels of [d['spec']['selector']['matchLabels'], podLabels(d),
    ...d['spec']['template']['spec']['topologySpreadConstraints'].map((c: K8s) => c['labelSelector']['matchLabels'])]) {
    labels['app.kubernetes.io/instance'] = 'aijob-worker-gpu';
  }
  const c = d['spec']['template']['spec']['containers'][0];
  c['envFrom'] = c['envFrom'].map((e: K8s) => (e['configMapRef']?.name === 'aijob-worker' ? { configMapRef: { name: 'aijob-worker-gpu' } } : e));
  cm['metadata']['name'] = 'aijob-worker-gpu';
  cm['data']['WORKER_QUEUES'] = 'gpu';
  hpa['metadata']['name'] = 'aijob-worker-gpu';
  hpa['spec']['scaleTargetRef']['name'] = 'aijob-worker-gpu';
  return [d, cm, hpa];
}

t.test('the runbook names the changes this test makes', async (t) => {
  for (const s of ['aijob-worker-gpu', 'WORKER_QUEUES: gpu', 'app.kubernetes.io/instance: aijob-worker-gpu', 'selector.matchLabels',
    'topologySpreadConstraints', 'scaleTargetRef.name: aijob-worker-gpu', 'queue: gpu', 'ServiceAccount `aijob-worker`']) {
    t.match(doc, s, `docs/operations.md: ${s}`);
  }
});

t.test('a second pool: apart where it must be, covered where it should be', async (t) => {
  const [gpu] = gpuPool();
  const first = find(base, 'Deployment', 'aijob-worker');
  t.notOk(selects(first['spec']['selector']['matchLabels'], podLabels(gpu!)), 'the first Deployment (and its HPA\'s CPU average) does not count the new pods');
  t.notOk(selects(gpu!['spec']['selector']['matchLabels'], podLabels(first)), 'nor the new one the old pods');
  for (const c of gpu!['spec']['template']['spec']['topologySpreadConstraints'] as K8s[]) {
    t.ok(selects(c['labelSelector']['matchLabels'], podLabels(gpu!)) && !selects(c['labelSelector']['matchLabels'], podLabels(first)), 'spread counts its own pods');
  }
  t.ok(selects(find(base, 'Service', 'aijob-worker')['spec']['selector'], podLabels(gpu!)), 'scraped through the Service aijob-worker');
  const pdbs = ofKind(base, 'PodDisruptionBudget').filter((p) => selects(p['spec']['selector']['matchLabels'], podLabels(gpu!)));
  t.same(pdbs.map((p) => p['metadata']['name']), ['aijob-worker'], 'exactly one PodDisruptionBudget covers it');
  const policies = ofKind(base, 'NetworkPolicy');
  const old: Endpoint = { namespace: 'aijob', labels: podLabels(first) };
  const pool: Endpoint = { namespace: 'aijob', labels: podLabels(gpu!) };
  const peers: [string, Endpoint, number][] = [
    ['scheduler', { namespace: 'aijob', labels: podLabels(find(base, 'Deployment', 'aijob-scheduler')) }, 50053],
    ['NATS', { namespace: 'aijob', labels: { 'app.kubernetes.io/name': 'nats', 'app.kubernetes.io/component': 'nats' } }, 4222],
    ['Postgres', { namespace: 'aijob', labels: { 'cnpg.io/cluster': 'aijob-pg' } }, 5432],
    ['internet', { ip: '203.0.113.7' }, 443],
    ['a private address', { ip: '10.1.2.3' }, 443],
  ];
  for (const [name, peer, port] of peers) t.equal(allowed(policies, pool, peer, port), allowed(policies, old, peer, port), `-> ${name}: as the first pool`);
  const sa = `cluster.local/ns/aijob/sa/${gpu!['spec']['template']['spec']['serviceAccountName']}`;
  const scheduler = podLabels(find(base, 'Deployment', 'aijob-scheduler'));
  t.ok(meshAllows(ofKind(istio, 'AuthorizationPolicy').filter((p) => p['metadata']['namespace'] === 'aijob'),
    { principal: sa, namespace: 'aijob', labels: scheduler, port: 50053, path: '/aijob.v1.WorkerService/Heartbeat' }), 'heartbeats allowed (same ServiceAccount)');
});

t.test('the model-server exception opens the workers\' way to those pods and port only', async (t) => {
  const example = documents(['deploy/k8s/examples/worker-egress-model-server.yaml']).map((d) => d.obj);
  const policy = find(example, 'NetworkPolicy', 'worker-to-model-server');
  const rule = policy['spec']['egress'][0];
  const modelNs = rule['to'][0]['namespaceSelector']['matchLabels']['kubernetes.io/metadata.name'];
  const model: Endpoint = { namespace: modelNs, labels: rule['to'][0]['podSelector']['matchLabels'] };
  const port = rule['ports'][0]['port'];
  const worker: Endpoint = { namespace: 'aijob', labels: podLabels(find(base, 'Deployment', 'aijob-worker')) };
  const job: Endpoint = { namespace: 'aijob', labels: podLabels(find(base, 'Deployment', 'aijob-job')) };
  const policies = ofKind(base, 'NetworkPolicy');
  t.notOk(allowed(policies, worker, model, port), 'without it, workers cannot reach an in-cluster model server');
  const withIt = [...policies, policy];
  t.ok(allowed(withIt, worker, model, port), `with it: worker -> ${modelNs} model pods :${port}`);
  t.ok(allowed(withIt, { namespace: 'aijob', labels: podLabels(gpuPool()[0]!) }, model, port), 'for every worker pool');
  t.notOk(allowed(withIt, worker, model, port + 1), 'no other port');
  t.notOk(allowed(withIt, worker, { namespace: modelNs, labels: { app: 'other' } }, port), 'no other pod there');
  t.notOk(allowed(withIt, worker, { ip: '10.20.30.40' }, 443), 'private ranges stay closed otherwise');
  t.notOk(allowed(withIt, job, model, port), 'no other service');
  t.match(doc, 'deploy/k8s/examples/worker-egress-model-server.yaml', 'the runbook points to it');
});
