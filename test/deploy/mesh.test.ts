// istio/ agrees with the manifests and the code: routes reach real Services, ports and
// RPCs; retries only where safe; the authorization policies allow exactly the calls the
// design has (derived from the config schemas and the routes), from ServiceAccounts that
// exist; JWT settings match the auth service's.
import t from 'tap';
import { meshAllows, type Call } from './authorization.js';
import { allowed } from './network-policy.js';
import { protoRpcs, servedBy, type Rpc } from './contracts.js';
import { build, documents, find, ofKind, readText, yamlFiles, type K8s } from './manifest-files.js';
import { configShape, defaults, portOf, services, type Service } from './workload-env.js';

const base = build('deploy/k8s/base');
const istio = build('istio');
const meshConfig = find(documents(['istio/install/mesh-config.yaml']).map((d) => d.obj), 'IstioOperator', 'aijob-mesh');
const policies = ofKind(istio, 'AuthorizationPolicy').filter((p) => p['metadata']['namespace'] === 'aijob');
const rpcs = protoRpcs();
const fqdn = (service: string) => `${service}.aijob.svc.cluster.local`;
const gatewaySa = 'cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account';
/** The Prometheus of deploy/kube-prometheus-stack/values.yaml (namespace monitoring). */
const prometheusSa = `cluster.local/ns/monitoring/sa/${documents(['deploy/kube-prometheus-stack/values.yaml'])[0]!.obj['prometheus']['serviceAccount']['name']}`;
const saOf = (s: Service) => `cluster.local/ns/aijob/sa/${find(base, 'Deployment', `aijob-${s}`)['spec']['template']['spec']['serviceAccountName']}`;
const labelsOf = (s: Service): Record<string, string> => find(base, 'Deployment', `aijob-${s}`)['spec']['template']['metadata']['labels'];
const vs = find(istio, 'VirtualService', 'aijob-api');
/** The first route matching a path, as Envoy picks it. */
const routeFor = (path: string): K8s | undefined => (vs['spec']['http'] as K8s[]).find((r) =>
  (r['match'] as K8s[]).some((m) => m['uri']['exact'] === path || (m['uri']['prefix'] && path.startsWith(m['uri']['prefix']))));
const destination = (route: K8s) => route['route'][0]['destination'];
/** Safe to repeat: reads, and the token exchange (which only mints another token). */
const idempotent = (r: Rpc) => /^(Get|List)/.test(r.method) || r.path === '/aijob.v1.AuthService/IssueToken';

t.test('the proto and service sources were read', async (t) => {
  t.ok(rpcs.length >= 20, `${rpcs.length} RPCs in proto/aijob/v1`);
  t.ok(rpcs.some((r) => r.streaming), 'a streaming RPC (WatchJob)');
  t.same(servedBy('scheduler').sort(), ['QueueService', 'WorkerService']);
  t.same(servedBy('worker'), []);
});

t.test('every VirtualService route targets a Service, its gRPC port, and RPCs that service serves', async (t) => {
  const gateway = find(istio, 'Gateway', vs['spec']['gateways'][0]);
  const hosts = (gateway['spec']['servers'] as K8s[]).flatMap((s) => s['hosts']);
  for (const h of vs['spec']['hosts']) t.ok(hosts.includes(h), `${h} is served by Gateway ${gateway['metadata']['name']}`);
  t.equal(gateway['spec']['servers'][0]['tls']['mode'], 'SIMPLE', 'TLS at the edge');
  for (const route of vs['spec']['http'] as K8s[]) {
    const dest = destination(route);
    const service = services.find((s) => fqdn(`aijob-${s}`) === dest['host']);
    t.ok(service, `route ${route['name']}: ${dest['host']} is an aijob Service`);
    const svc = find(base, 'Service', `aijob-${service}`);
    const grpc = (svc['spec']['ports'] as K8s[]).find((p) => p['name'] === 'grpc');
    t.equal(dest['port']['number'], grpc?.['port'], `route ${route['name']}: the Service's grpc port`);
    t.ok(route['retries'], `route ${route['name']}: retries set explicitly (Istio retries by default)`);
    for (const m of route['match'] as K8s[]) {
      const { exact, prefix } = m['uri'] as { exact?: string; prefix?: string };
      const served = servedBy(service!);
      if (exact) {
        const rpc = rpcs.find((r) => r.path === exact);
        t.ok(rpc, `route ${route['name']}: ${exact} is an RPC in proto/aijob/v1`);
        t.ok(rpc && served.includes(rpc.service), `route ${route['name']}: ${service} serves ${rpc?.service}`);
      } else {
        t.ok(served.some((s) => prefix === `/aijob.v1.${s}/`), `route ${route['name']}: ${prefix} is a service ${service} serves`);
      }
    }
  }
});

t.test('the public API: every job and queue RPC is routed, nothing internal is', async (t) => {
  for (const r of rpcs) {
    const route = routeFor(r.path);
    const isPublic = r.service === 'JobService' || r.service === 'QueueService' || r.service === 'WorkerGatewayService' ||
      r.path === '/aijob.v1.AuthService/IssueToken';
    t.equal(Boolean(route), isPublic, `${r.path} ${isPublic ? 'is' : 'is not'} routed`);
    if (!route) continue;
    if (r.streaming) {
      t.equal(route['timeout'], '0s', `${r.path}: a stream has no deadline at the mesh`);
      t.equal(route['retries']['attempts'], 0, `${r.path}: a stream is never replayed`);
    } else {
      t.match(route['timeout'], /^[1-9]\d*s$/, `${r.path}: a per-route timeout`);
    }
    if (route['retries']['attempts'] > 0) {
      t.ok(idempotent(r), `${r.path}: retried, so it must be idempotent`);
      t.equal(route['retries']['retryOn'], 'unavailable', `${r.path}: retried only on unavailable`);
      t.ok(route['retries']['perTryTimeout'], `${r.path}: each try bounded`);
    }
  }
  t.ok((vs['spec']['http'] as K8s[]).some((r) => r['retries']['attempts'] > 0), 'reads are retried');
});

t.test('authorization policies name ServiceAccounts that exist and run a Deployment', async (t) => {
  const used = new Set(ofKind(base, 'Deployment').map((d) => `cluster.local/ns/aijob/sa/${d['spec']['template']['spec']['serviceAccountName']}`));
  const accounts = new Set(ofKind(base, 'ServiceAccount').map((s) => `cluster.local/ns/aijob/sa/${s['metadata']['name']}`));
  const principals = ofKind(istio, 'AuthorizationPolicy').flatMap((p) => ((p['spec']['rules'] ?? []) as K8s[])
    .flatMap((r) => ((r['from'] ?? []) as K8s[]).flatMap((f) => (f['source']['principals'] ?? []) as string[])));
  t.ok(principals.length >= 5);
  for (const p of principals) {
    if (p === gatewaySa || p === prometheusSa) continue;
    t.ok(accounts.has(p) && used.has(p), `${p} is a ServiceAccount a Deployment runs as`);
  }
  t.ok(policies.some((p) => p['metadata']['name'] === 'deny-all' && Object.keys(p['spec']).length === 0), 'deny-all in aijob');
});

t.test('exactly the calls of the design are allowed', async (t) => {
  const shapes = Object.fromEntries(await Promise.all(services.map(async (s) => [s, await configShape(s)]))) as Record<Service, object>;
  const callers: [string, (r: Rpc, target: Service) => boolean][] = [
    [gatewaySa, (r, target) => destination(routeFor(r.path) ?? { route: [{ destination: {} }] })['host'] === fqdn(`aijob-${target}`)],
    [prometheusSa, () => false],
    ['cluster.local/ns/default/sa/default', () => false],
    ...services.map((s): [string, (r: Rpc) => boolean] => [saOf(s), (r) =>
      (r.path === '/aijob.v1.AuthService/Authenticate' && 'AUTH_ADDR' in shapes[s]) ||
      (r.service === 'WorkerService' && 'SCHEDULER_ADDR' in shapes[s])]),
  ];
  for (const target of services) {
    const port = defaults(shapes[target] as never)['GRPC_PORT'] as number | undefined;
    if (!port) continue;
    for (const r of rpcs.filter((r) => servedBy(target).includes(r.service))) {
      for (const [principal, expect] of callers) {
        const call: Call = { principal, namespace: 'aijob', labels: labelsOf(target), port, path: r.path };
        t.equal(meshAllows(policies, call), expect(r, target), `${principal.split('/').pop()} -> ${r.path}: ${expect(r, target)}`);
      }
    }
  }
});

t.test('Prometheus scrapes /metrics on the ops ports; the JWKS is public; nothing else is', async (t) => {
  for (const s of services) {
    const ops = defaults(await configShape(s))['OPS_PORT'] as number;
    const call = (principal: string | undefined, path: string): Call => ({ principal, namespace: 'aijob', labels: labelsOf(s), port: ops, path, method: 'GET' });
    t.ok(meshAllows(policies, call(prometheusSa, '/metrics')), `Prometheus -> ${s}:${ops}/metrics`);
    t.notOk(meshAllows(policies, call(prometheusSa, '/readyz')), `Prometheus -> ${s} /readyz: no`);
    t.notOk(meshAllows(policies, call(gatewaySa, '/metrics')), `gateway -> ${s} /metrics: no`);
    t.notOk(meshAllows(policies, call(undefined, '/metrics')), `plaintext -> ${s} /metrics: no`);
  }
  const ra = find(istio, 'RequestAuthentication', 'aijob-jwt');
  const jwks = new URL(ra['spec']['jwtRules'][0]['jwksUri']);
  const authOps = defaults(await configShape('auth'))['OPS_PORT'] as number;
  t.equal(jwks.host, `${fqdn('aijob-auth')}:${authOps}`, 'JWKS from the auth Service\'s ops port');
  t.match(readText('services/auth/src/app.ts'), `'${jwks.pathname}'`, `auth serves ${jwks.pathname}`);
  t.ok(meshAllows(policies, { namespace: 'aijob', labels: labelsOf('auth'), port: authOps, path: jwks.pathname, method: 'GET' }), 'istiod (no mesh identity) fetches the JWKS');
});

t.test('JWTs are checked at the edge with the auth service\'s issuer and audience', async (t) => {
  const ra = find(istio, 'RequestAuthentication', 'aijob-jwt');
  const authConfig = find(base, 'ConfigMap', 'aijob-auth')['data'];
  const rule = ra['spec']['jwtRules'][0];
  t.equal(rule['issuer'], authConfig['TOKEN_ISSUER']);
  t.ok(rule['audiences'].includes(authConfig['TOKEN_AUDIENCE']));
  t.equal(rule['forwardOriginalToken'], true, 'the job service sees the token too');
  const gateway = find(istio, 'Gateway', 'aijob-gateway');
  t.same(ra['spec']['selector']['matchLabels'], gateway['spec']['selector'], 'on the ingress gateway');
  const edge = ofKind(istio, 'AuthorizationPolicy').find((p) => p['metadata']['name'] === 'edge-requires-jwt')!;
  t.equal(edge['spec']['action'], 'DENY');
  const op = edge['spec']['rules'][0]['to'][0]['operation'];
  for (const h of vs['spec']['hosts']) t.ok(op['hosts'].includes(h), `the JWT requirement covers ${h}`);
  t.same(op['notPaths'], ['/aijob.v1.AuthService/IssueToken'], 'only the token exchange goes without a JWT');
  t.ok(routeFor('/aijob.v1.AuthService/IssueToken'), 'and it is routed');
});

t.test('mTLS is STRICT mesh-wide; DestinationRules use ISTIO_MUTUAL with pools and outlier detection', async (t) => {
  const pas = ofKind(istio, 'PeerAuthentication');
  const mesh = pas.find((p) => p['metadata']['namespace'] === 'istio-system' && !p['spec']['selector']);
  t.equal(mesh?.['spec']['mtls']['mode'], 'STRICT');
  const authOps = String(defaults(await configShape('auth'))['OPS_PORT']);
  for (const p of pas.filter((p) => p !== mesh)) {
    t.same(Object.keys(p['spec']['portLevelMtls'] ?? {}), [authOps], `${p['metadata']['name']}: only the JWKS port is relaxed`);
    t.equal(p['spec']['mtls']['mode'], 'STRICT');
  }
  for (const svc of ofKind(base, 'Service').filter((s) => (s['spec']['ports'] as K8s[]).some((p) => p['name'] === 'grpc'))) {
    const dr = ofKind(istio, 'DestinationRule').find((d) => d['spec']['host'] === fqdn(svc['metadata']['name']));
    const policy = dr?.['spec']['trafficPolicy'];
    t.equal(policy?.['tls']['mode'], 'ISTIO_MUTUAL', `${svc['metadata']['name']}: ISTIO_MUTUAL`);
    t.ok(policy?.['connectionPool']['tcp']['maxConnections'] && policy['connectionPool']['http']['http2MaxRequests'], `${svc['metadata']['name']}: connection pool limits`);
    t.ok(policy?.['outlierDetection']['baseEjectionTime'], `${svc['metadata']['name']}: outlier detection`);
  }
});

t.test('traces go to Jaeger, sampled at the rate the services use', async (t) => {
  const tel = ofKind(istio, 'Telemetry')[0]!;
  const tracing = tel['spec']['tracing'][0];
  t.equal(tracing['providers'][0]['name'], 'jaeger');
  const arg = Number(find(base, 'ConfigMap', 'aijob-common')['data']['OTEL_TRACES_SAMPLER_ARG']);
  t.equal(tracing['randomSamplingPercentage'], arg * 100, 'mesh and services sample the same share');
  t.ok(portOf(find(base, 'ConfigMap', 'aijob-common')['data']['OTEL_EXPORTER_OTLP_ENDPOINT']) > 0);
});

t.test('the mesh config defines the tracing provider: the services\' collector, port and protocol, W3C context', async (t) => {
  const common = find(base, 'ConfigMap', 'aijob-common')['data'] as Record<string, string>;
  const endpoint = new URL(common['OTEL_EXPORTER_OTLP_ENDPOINT']!);
  const mesh = meshConfig['spec']['meshConfig'];
  const names = (tel: K8s) => (tel['spec']['tracing'] as K8s[]).flatMap((x) => (x['providers'] as K8s[]).map((p) => p['name']));
  for (const name of ofKind(istio, 'Telemetry').flatMap(names)) {
    const provider = (mesh['extensionProviders'] as K8s[]).find((p) => p['name'] === name);
    t.ok(provider, `the Telemetry's provider ${name} is defined`);
    const otel = provider?.['opentelemetry'];
    t.ok(otel, `${name}: an OpenTelemetry (OTLP) provider, whose tracer propagates W3C trace context`);
    t.equal(otel?.['service'], endpoint.hostname, `${name}: the collector Service of OTEL_EXPORTER_OTLP_ENDPOINT`);
    t.equal(otel?.['port'], Number(endpoint.port), `${name}: its port ${endpoint.port}`);
    t.equal(Boolean(otel?.['http']), common['OTEL_EXPORTER_OTLP_PROTOCOL']!.startsWith('http'), `${name}: the same protocol (${common['OTEL_EXPORTER_OTLP_PROTOCOL']})`);
    if (otel?.['http']) t.equal(otel['http']['path'], '/v1/traces', `${name}: OTLP/HTTP's traces path`);
  }
  t.equal(mesh['enableTracing'], true);
  t.match(common['OTEL_PROPAGATORS'], /(^|,)tracecontext(,|$)/, 'the services propagate W3C trace context too');
  t.notMatch(common['OTEL_PROPAGATORS'], /b3|jaeger/, 'and no other format the mesh would not continue');
});

t.test('the NetworkPolicies open exactly the provider\'s port to the collector\'s namespace', async (t) => {
  const provider = (meshConfig['spec']['meshConfig']['extensionProviders'] as K8s[]).find((p) => p['name'] === 'jaeger')!['opentelemetry'];
  const collectorNamespace = String(provider['service']).split('.')[1]!;
  const collector = { namespace: collectorNamespace, labels: { 'app.kubernetes.io/name': 'jaeger', 'app.kubernetes.io/component': 'collector' } };
  const policies = ofKind(base, 'NetworkPolicy');
  for (const s of services) {
    const me = { namespace: 'aijob', labels: labelsOf(s) };
    t.ok(allowed(policies, me, collector, provider['port']), `${s} (and its sidecar) -> ${collectorNamespace}:${provider['port']}`);
    for (const other of [4317, 14250, 14268, 9411, 16686]) t.notOk(allowed(policies, me, collector, other), `${s} -> ${collectorNamespace}:${other}: closed`);
  }
  const toCollector = policies.flatMap((p) => ((p['spec']['egress'] ?? []) as K8s[]).filter((r) => ((r['to'] ?? []) as K8s[])
    .some((peer) => peer['namespaceSelector']?.matchLabels?.['kubernetes.io/metadata.name'] === collectorNamespace)));
  t.ok(toCollector.length >= 4, 'each service has its rule');
  for (const r of toCollector) t.same(r['ports'], [{ protocol: 'TCP', port: provider['port'] }], 'that port only');
});

t.test('istiod refreshes the JWKS often enough for a rotated key, as the runbook says', async (t) => {
  const env = meshConfig['spec']['values']['pilot']['env'] as Record<string, string>;
  const interval = env['PILOT_JWT_PUB_KEY_REFRESH_INTERVAL'];
  const m = /^(\d+)(s|m)$/.exec(interval ?? '');
  t.ok(m, `PILOT_JWT_PUB_KEY_REFRESH_INTERVAL=${interval}`);
  const seconds = Number(m?.[1]) * (m?.[2] === 'm' ? 60 : 1);
  t.ok(seconds > 0 && seconds <= 300, 'minutes at most (the default is 20 m, the tokens\' whole life)');
  const ttl = Number(find(base, 'ConfigMap', 'aijob-auth')['data']['TOKEN_TTL_SECONDS']);
  t.ok(seconds < ttl, 'shorter than a token lives');
  const doc = readText('docs/operations.md');
  const rotation = doc.slice(doc.indexOf('## Secrets and key rotation'), doc.indexOf('\n## ', doc.indexOf('## Secrets and key rotation') + 1));
  t.match(rotation, 'PILOT_JWT_PUB_KEY_REFRESH_INTERVAL', 'the runbook names the setting');
  t.match(rotation, new RegExp(`\\b${m?.[1]} ${m?.[2] === 'm' ? 'minute' : 'second'}`), `and the wait it implies (${interval})`);
  const retire = /"retire_after":"(\d+)s"/.exec(rotation)?.[1];
  t.ok(Number(retire) >= ttl + seconds, `retire_after ${retire}s outlasts a token issued just before (${ttl}s) plus the refresh`);
});

t.test('istio/ holds only namespaced resources placed on purpose', async (t) => {
  for (const d of documents(yamlFiles('istio')).filter((d) => d.obj['kind'] !== 'Kustomization')) {
    t.ok(['aijob', 'istio-system'].includes(d.obj['metadata']['namespace']), `${d.file}: ${d.obj['kind']} ${d.obj['metadata']['name']} names its namespace`);
  }
});
