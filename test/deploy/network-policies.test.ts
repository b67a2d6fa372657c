// The NetworkPolicies allow exactly the design's flows. Who may reach Postgres, NATS,
// auth and the scheduler is derived from the config schemas (a service that has no
// DATABASE_URL must not reach Postgres), ports from the code and the ConfigMaps.
import t from 'tap';
import { build, documents, find, ofKind, readText, type K8s } from './manifest-files.js';
import { allowed, type Endpoint } from './network-policy.js';
import { configShape, defaults, portOf, services, type Service } from './workload-env.js';

const base = build('deploy/k8s/base');
const policies = ofKind(base, 'NetworkPolicy');
const common = find(base, 'ConfigMap', 'aijob-common')['data'] as Record<string, string>;
const pod = (namespace: string, labels: Record<string, string>): Endpoint => ({ namespace, labels });
const labelsOf = (kind: string, name: string): Record<string, string> => find(base, kind, name)['spec']['template']['metadata']['labels'];

/** Pods of the services, and the peers around them as their charts and operators label them. */
const app = Object.fromEntries(services.map((s) => [s, pod('aijob', labelsOf('Deployment', `aijob-${s}`))])) as Record<Service, Endpoint>;
const migrate = pod('aijob', labelsOf('Job', 'aijob-migrate'));
const nats = pod('aijob', { 'app.kubernetes.io/name': 'nats', 'app.kubernetes.io/instance': 'nats', 'app.kubernetes.io/component': 'nats' });
const natsBox = pod('aijob', { 'app.kubernetes.io/name': 'nats', 'app.kubernetes.io/instance': 'nats', 'app.kubernetes.io/component': 'nats-box' });
const postgres = pod('aijob', { 'cnpg.io/cluster': 'aijob-pg', 'cnpg.io/instanceRole': 'primary', role: 'primary' });
const gateway = pod('istio-system', { istio: 'ingressgateway', app: 'istio-ingressgateway' });
const istiod = pod('istio-system', { app: 'istiod', istio: 'pilot' });
const prometheus = pod('monitoring', { 'app.kubernetes.io/name': 'prometheus', prometheus: 'k8s' });
const dns = pod('kube-system', { 'k8s-app': 'kube-dns' });
const collector = pod('observability', { 'app.kubernetes.io/name': 'jaeger' });
const stranger = pod('default', { app: 'curious' });
const internet: Endpoint = { ip: '203.0.113.7' };
const metadataService: Endpoint = { ip: '169.254.169.254' };
const privateHost: Endpoint = { ip: '10.20.30.40' };

const natsPort = portOf(common['NATS_URL']!);
const otlpPort = portOf(common['OTEL_EXPORTER_OTLP_ENDPOINT']!);
const pgPort = 5432;

t.test('deny by default, in both directions', async (t) => {
  t.ok(policies.some((p) => Object.keys(p['spec']['podSelector']).length === 0 &&
    !p['spec']['ingress'] && !p['spec']['egress'] && p['spec']['policyTypes'].length === 2), 'a default-deny policy');
  t.notOk(allowed(policies, stranger, app.job, 50052), 'a pod elsewhere cannot call the job service directly');
  t.notOk(allowed(policies, app.job, stranger, 8080), 'nor can the job service call out to it');
});

t.test('each service reaches exactly the dependencies its config names', async (t) => {
  const grpc = Object.fromEntries(await Promise.all(services.map(async (s) => [s, defaults(await configShape(s))['GRPC_PORT'] as number | undefined])));
  for (const s of services) {
    const shape = await configShape(s);
    const knows = (k: string) => k in shape;
    t.equal(allowed(policies, app[s], postgres, pgPort), knows('DATABASE_URL'), `${s} -> Postgres: ${knows('DATABASE_URL')}`);
    t.equal(allowed(policies, app[s], nats, natsPort), knows('NATS_URL'), `${s} -> NATS: ${knows('NATS_URL')}`);
    t.equal(allowed(policies, app[s], app.auth, grpc['auth']!), knows('AUTH_ADDR'), `${s} -> auth gRPC: ${knows('AUTH_ADDR')}`);
    t.equal(allowed(policies, app[s], app.scheduler, grpc['scheduler']!), knows('SCHEDULER_ADDR'), `${s} -> scheduler gRPC: ${knows('SCHEDULER_ADDR')}`);
    t.notOk(allowed(policies, app[s], app.job, grpc['job']!), `${s} -> job gRPC: only the gateway calls it`);
    // Only executors call out (model providers, webhooks), and never into private ranges.
    t.equal(allowed(policies, app[s], internet, 443), knows('LLM_PROVIDERS'), `${s} -> internet 443: ${knows('LLM_PROVIDERS')}`);
    t.notOk(allowed(policies, app[s], metadataService, 80), `${s} -> cloud metadata: never`);
    t.notOk(allowed(policies, app[s], privateHost, 443), `${s} -> private addresses: never`);
    t.ok(allowed(policies, app[s], dns, 53, 'UDP'), `${s} -> DNS`);
    t.ok(allowed(policies, app[s], istiod, 15012), `${s}'s sidecar -> istiod`);
    t.ok(allowed(policies, app[s], collector, otlpPort), `${s} -> trace collector :${otlpPort}`);
  }
});

t.test('inbound: the gateway reaches the public APIs, Prometheus the ops ports, nobody else', async (t) => {
  for (const s of services) {
    const want = defaults(await configShape(s));
    t.ok(allowed(policies, prometheus, app[s], want['OPS_PORT'] as number), `Prometheus -> ${s}:${want['OPS_PORT']}`);
    t.notOk(allowed(policies, gateway, app[s], want['OPS_PORT'] as number), `gateway -> ${s} ops: no`);
    t.notOk(allowed(policies, stranger, app[s], want['OPS_PORT'] as number), `stranger -> ${s} ops: no`);
    if (want['GRPC_PORT']) t.ok(allowed(policies, gateway, app[s], want['GRPC_PORT'] as number), `gateway -> ${s} gRPC (routed by istio/)`);
  }
  const jwks = /jwksUri: (\S+)/.exec(readText('istio/requestauthentication.yaml'))![1]!;
  t.ok(allowed(policies, istiod, app.auth, portOf(new URL(jwks).host)), 'istiod -> auth JWKS');
  t.notOk(allowed(policies, stranger, app.auth, portOf(new URL(jwks).host)), 'only istiod fetches it');
});

t.test('the migration, NATS and Postgres get only their own flows', async (t) => {
  t.ok(allowed(policies, migrate, postgres, pgPort), 'migrate -> Postgres');
  t.notOk(allowed(policies, migrate, nats, natsPort), 'migrate -> NATS: no');
  t.ok(allowed(policies, natsBox, nats, natsPort), 'nats-box -> NATS (runbooks)');
  t.notOk(allowed(policies, natsBox, postgres, pgPort), 'nats-box -> Postgres: no');
  t.ok(allowed(policies, nats, nats, 6222), 'NATS cluster routes');
  t.notOk(allowed(policies, stranger, nats, natsPort), 'stranger -> NATS: no');
  const exporter = documents(['deploy/nats/values.yaml'])[0]!.obj['promExporter']['port'] as number;
  t.ok(allowed(policies, prometheus, nats, exporter), `Prometheus -> NATS exporter :${exporter} (the PodMonitor's prom-metrics)`);
  t.notOk(allowed(policies, prometheus, nats, 8222), 'the monitor port itself is read only inside the pod');
  t.notOk(allowed(policies, stranger, nats, exporter), 'stranger -> NATS exporter: no');
  t.ok(allowed(policies, prometheus, postgres, 9187), 'Prometheus -> Postgres metrics (the PodMonitor\'s "metrics")');
  t.ok(allowed(policies, postgres, postgres, pgPort), 'Postgres replication');
  t.ok(allowed(policies, postgres, internet, 443), 'Postgres -> object store (WAL archive, backups)');
  t.notOk(allowed(policies, stranger, postgres, pgPort), 'stranger -> Postgres: no');
  t.notOk(allowed(policies, gateway, postgres, pgPort), 'gateway -> Postgres: no');
});

t.test('the evaluator itself: selectors, namespaces, ports and ipBlocks', async (t) => {
  const p: K8s[] = [{
    metadata: { name: 'x', namespace: 'aijob' },
    spec: { podSelector: { matchLabels: { a: '1' } }, policyTypes: ['Ingress'],
      ingress: [{ from: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'm' } }, podSelector: { matchLabels: { b: '2' } } }], ports: [{ port: 80 }] }] },
  }];
  t.ok(allowed(p, pod('m', { b: '2' }), pod('aijob', { a: '1' }), 80));
  t.notOk(allowed(p, pod('m', { b: '3' }), pod('aijob', { a: '1' }), 80), 'pod labels');
  t.notOk(allowed(p, pod('n', { b: '2' }), pod('aijob', { a: '1' }), 80), 'namespace');
  t.notOk(allowed(p, pod('m', { b: '2' }), pod('aijob', { a: '1' }), 81), 'port');
  t.ok(allowed(p, pod('m', { b: '3' }), pod('aijob', { a: '9' }), 81), 'unselected pods are open');
  t.throws(() => allowed([{ ...p[0]!, spec: { ...p[0]!['spec'], podSelector: { matchExpressions: [] } } }], internet, pod('aijob', {}), 1));
});
