// The workloads agree with the code: ports are the config defaults, every setting a
// service's config schema knows is provided (ConfigMap, Secret or pod field) and
// parses, nothing unknown is set; pods are hardened, probed, spread and budgeted.
import t from 'tap';
import { LIVENESS_SERVICE } from '@aijob/server';
import { build, find, ofKind, overlays, readText, type K8s } from './manifest-files.js';
import {
  configShape, containerEnv, defaults, migrateVariables, otelVariables, parseEnv, portOf, services,
} from './workload-env.js';

const base = build('deploy/k8s/base');
const builds: [string, K8s[]][] = [['base', base], ...overlays().map((o): [string, K8s[]] => [o, build(`deploy/k8s/overlays/${o}`)])];
const containerOf = (d: K8s): K8s => d['spec']['template']['spec']['containers'][0];
const podLabels = (d: K8s): Record<string, string> => d['spec']['template']['metadata']['labels'];
const selects = (selector: Record<string, string>, labels: Record<string, string>) =>
  Object.entries(selector).every(([k, v]) => labels[k] === v);

t.test('one Deployment, ServiceAccount and Service per service, the Service selecting its pods', async (t) => {
  t.same(ofKind(base, 'Deployment').map((d) => d['metadata']['name']).sort(), services.map((s) => `aijob-${s}`));
  for (const s of ofKind(base, 'Service')) {
    const targets = ofKind(base, 'Deployment').filter((d) => selects(s['spec']['selector'], podLabels(d)));
    t.same(targets.map((d) => d['metadata']['name']), [s['metadata']['name']], `Service ${s['metadata']['name']} selects exactly its Deployment's pods`);
    for (const port of s['spec']['ports'] as K8s[]) {
      const cp = (containerOf(targets[0]!)['ports'] as K8s[]).find((p) => p['name'] === port['targetPort']);
      t.equal(cp?.['containerPort'], port['port'], `${s['metadata']['name']}: ${port['name']} targets the container port of that name`);
      if (port['name'] === 'grpc') t.equal(port['appProtocol'], 'grpc', 'the gRPC port is named grpc with appProtocol grpc');
    }
  }
  for (const d of ofKind(base, 'Deployment')) {
    const sa = d['spec']['template']['spec']['serviceAccountName'];
    t.equal(sa, d['metadata']['name'], `${d['metadata']['name']} runs as its own ServiceAccount`);
    t.equal(find(base, 'ServiceAccount', sa)['automountServiceAccountToken'], false, `${sa}: no API token mounted`);
  }
});

t.test('ports in the manifests are the defaults in code', async (t) => {
  for (const service of services) {
    const d = find(base, 'Deployment', `aijob-${service}`);
    const shape = await configShape(service);
    const want = defaults(shape);
    const ports = Object.fromEntries((containerOf(d)['ports'] as K8s[]).map((p) => [p['name'], p['containerPort']]));
    t.equal(ports['ops'], want['OPS_PORT'], `${service}: ops port ${ports['ops']}`);
    if ('GRPC_PORT' in shape) t.equal(ports['grpc'], want['GRPC_PORT'], `${service}: gRPC port ${ports['grpc']}`);
    else t.notOk(ports['grpc'], `${service}: no gRPC port (it serves none)`);
    const env = containerEnv(base, containerOf(d)).values;
    for (const k of ['GRPC_PORT', 'OPS_PORT'].filter((k) => k in shape)) t.equal(Number(env[k]), want[k], `${service}: ${k} set to the same`);
  }
  const addresses = find(base, 'ConfigMap', 'aijob-job')['data']['AUTH_ADDR'];
  t.equal(portOf(addresses), defaults(await configShape('auth'))['GRPC_PORT'], 'AUTH_ADDR points at the auth gRPC port');
  t.equal(portOf(find(base, 'ConfigMap', 'aijob-worker')['data']['SCHEDULER_ADDR']), defaults(await configShape('scheduler'))['GRPC_PORT'],
    'SCHEDULER_ADDR points at the scheduler gRPC port');
});

t.test('every setting a service knows is provided, nothing unknown is set, and it all parses', async (t) => {
  for (const [name, docs] of builds) {
    for (const service of services) {
      const shape = await configShape(service);
      const env = containerEnv(docs, containerOf(find(docs, 'Deployment', `aijob-${service}`)));
      t.same(env.problems, [], `${name}/${service}: every reference resolves, nothing set twice`);
      const known = new Set(Object.keys(shape));
      t.same(Object.keys(env.values).filter((k) => !known.has(k) && !otelVariables.has(k)), [],
        `${name}/${service}: every variable is one its config schema (or the OpenTelemetry SDK) knows`);
      t.same([...known].filter((k) => !(k in env.values)), [], `${name}/${service}: every setting of its schema is provided`);
      t.doesNotThrow(() => parseEnv(shape, env.values), `${name}/${service}: the values parse as the service parses them`);
      t.equal(env.values['OTEL_SERVICE_NAME'], `aijob-${service}`, `${name}/${service}: named in traces`);
      for (const s of env.secrets) t.equal(s.name, 'aijob-secrets', `${service}: ${s.key} from aijob-secrets`);
    }
  }
  const common = find(base, 'ConfigMap', 'aijob-common')['data'] as Record<string, string>;
  for (const service of services) {
    const known = new Set(Object.keys(await configShape(service)));
    t.same(Object.keys(common).filter((k) => !known.has(k) && !otelVariables.has(k)), [], `aijob-common holds only what ${service} knows too`);
  }
});

t.test('secrets come from aijob-secrets, and the README creates every required key', async (t) => {
  const readme = readText('README.md');
  const created = /create secret generic aijob-secrets([\s\S]*?)\n(?!\s)/.exec(readme)?.[1] ?? '';
  const keys = new Set([...created.matchAll(/--from-literal=(\w+)=/g)].map((m) => m[1]));
  t.ok(keys.size > 0, 'the README creates aijob-secrets');
  const refs = [...ofKind(base, 'Deployment'), ...ofKind(base, 'Job')].flatMap((d) => containerEnv(base, containerOf(d)).secrets);
  t.ok(refs.length >= 5);
  for (const r of refs.filter((r) => !r.optional)) t.ok(keys.has(r.key), `README creates ${r.key}`);
  const worker = containerEnv(base, containerOf(find(base, 'Deployment', 'aijob-worker')));
  t.notOk('DATABASE_URL' in worker.values, 'workers hold no database credentials');
});

t.test('the migration Job runs `npm run migrate` with only what it reads', async (t) => {
  const job = find(base, 'Job', 'aijob-migrate');
  const c = containerOf(job);
  t.same(c['args'], ['migrate']);
  const env = containerEnv(base, c);
  t.same(env.problems, []);
  t.same(Object.keys(env.values).sort(), migrateVariables().sort(), 'exactly the variables migrate-cli reads');
  t.equal(job['spec']['template']['spec']['restartPolicy'], 'OnFailure');
  t.equal(job['spec']['template']['metadata']['annotations']['sidecar.istio.io/inject'], 'false', 'no sidecar to keep it running');
});

t.test('services that own tables wait for the migrations in an init container', async (t) => {
  for (const [name, docs] of builds) {
    for (const service of services) {
      const d = find(docs, 'Deployment', `aijob-${service}`);
      const pod = d['spec']['template']['spec'];
      const env = containerEnv(docs, containerOf(d)).values;
      const inits = (pod['initContainers'] ?? []) as K8s[];
      if (!('DATABASE_URL' in env)) {
        t.same(inits, [], `${name}/${service}: no database, nothing to wait for`);
        continue;
      }
      t.equal(parseEnv(await configShape(service), env)['MIGRATE_ON_START'], false, `${name}/${service}: does not migrate itself`);
      t.equal(inits.length, 1, `${name}/${service}: one init container`);
      const init = inits[0]!;
      t.same(init['args'], ['migrate', '--wait'], `${name}/${service}: runs \`migrate --wait\``);
      t.equal(init['image'], containerOf(d)['image'], `${name}/${service}: from the same image (its migrations are the ones awaited)`);
      const ie = containerEnv(docs, init);
      t.same(ie.problems, []);
      t.same(Object.keys(ie.values).sort(), migrateVariables().sort(), `${name}/${service}: with only what migrate-cli reads`);
      t.equal(ie.values['DATABASE_URL'], env['DATABASE_URL'], `${name}/${service}: the same database`);
      t.same([init['securityContext']['allowPrivilegeEscalation'], init['securityContext']['readOnlyRootFilesystem'], init['securityContext']['capabilities']['drop']],
        [false, true, ['ALL']], `${name}/${service}: hardened like the service`);
      t.ok(init['resources']['limits']['memory'], `${name}/${service}: bounded`);
      const excluded = String(d['spec']['template']['metadata']['annotations']['traffic.sidecar.istio.io/excludeOutboundPorts']).split(',');
      t.ok(excluded.includes(String(portOf(env['DATABASE_URL']!))), `${name}/${service}: Postgres bypasses the sidecar, which is not up yet`);
    }
  }
});

t.test('pods are hardened, probed, sized and spread', async (t) => {
  for (const w of [...ofKind(base, 'Deployment'), ...ofKind(base, 'Job')]) {
    const name = w['metadata']['name'];
    const pod = w['spec']['template']['spec'];
    const c = containerOf(w);
    t.equal(pod['securityContext']['runAsNonRoot'], true, `${name}: runAsNonRoot`);
    t.equal(pod['securityContext']['seccompProfile']['type'], 'RuntimeDefault', `${name}: seccomp RuntimeDefault`);
    t.same([c['securityContext']['allowPrivilegeEscalation'], c['securityContext']['readOnlyRootFilesystem'], c['securityContext']['capabilities']['drop']],
      [false, true, ['ALL']], `${name}: no escalation, read-only root, no capabilities`);
    t.ok(c['resources']['requests']['cpu'] && c['resources']['requests']['memory'] && c['resources']['limits']['memory'], `${name}: requests and limits`);
  }
  for (const d of ofKind(base, 'Deployment')) {
    const name = d['metadata']['name'];
    const c = containerOf(d);
    const grpc = (c['ports'] as K8s[]).find((p) => p['name'] === 'grpc');
    // Liveness (and startup) must not follow dependencies, or an outage of NATS would
    // restart every pod: gRPC services answer them on the always-SERVING health name.
    if (grpc) {
      t.same(c['readinessProbe']['grpc'], { port: grpc['containerPort'] }, `${name}: native gRPC readiness probe ('' follows readiness)`);
      t.same(c['startupProbe']['grpc'], { port: grpc['containerPort'], service: LIVENESS_SERVICE }, `${name}: native gRPC startup probe`);
      t.same(c['livenessProbe']['grpc'], { port: grpc['containerPort'], service: LIVENESS_SERVICE }, `${name}: native gRPC liveness probe`);
      t.notOk(c['livenessProbe']['httpGet'], `${name}: no HTTP liveness beside it`);
    } else {
      // Workers serve no gRPC: HTTP probes on the ops port.
      t.same(c['readinessProbe']['httpGet'], { path: '/readyz', port: 'ops' }, `${name}: HTTP readiness on the ops port`);
      t.same(c['livenessProbe']['httpGet'], { path: '/healthz', port: 'ops' }, `${name}: liveness is /healthz`);
    }
    const spread = d['spec']['template']['spec']['topologySpreadConstraints'] as K8s[];
    t.same(spread.map((s) => s['topologyKey']).sort(), ['kubernetes.io/hostname', 'topology.kubernetes.io/zone'], `${name}: spread over hosts and zones`);
    for (const s of spread) t.ok(selects(s['labelSelector']['matchLabels'], podLabels(d)), `${name}: spread counts its own pods`);
  }
});

t.test('shutdown: the grace period outlasts the drain, the drain outlasts SHUTDOWN_GRACE_MS', async (t) => {
  for (const service of services) {
    const d = find(base, 'Deployment', `aijob-${service}`);
    const graceMs = Number(containerEnv(base, containerOf(d)).values['SHUTDOWN_GRACE_MS']);
    const proxy = d['spec']['template']['metadata']['annotations']['proxy.istio.io/config'] as string;
    const drainMs = Number(/terminationDrainDuration: (\d+)s/.exec(proxy)?.[1]) * 1000;
    t.match(proxy, /holdApplicationUntilProxyStarts: true/, `${service}: starts after its sidecar`);
    t.ok(drainMs >= graceMs, `${service}: sidecar drains ${drainMs} ms >= ${graceMs} ms of in-flight work`);
    t.ok(d['spec']['template']['spec']['terminationGracePeriodSeconds'] * 1000 > drainMs, `${service}: not killed before`);
  }
});

t.test('availability: two schedulers or more, PDBs for every Deployment, the HPA owns the worker count', async (t) => {
  for (const [name, docs] of builds) {
    t.ok(find(docs, 'Deployment', 'aijob-scheduler')['spec']['replicas'] >= 2, `${name}: schedulers >= 2 (one leader, standbys)`);
    for (const d of ofKind(docs, 'Deployment')) {
      const pdbs = ofKind(docs, 'PodDisruptionBudget').filter((p) => selects(p['spec']['selector']['matchLabels'], podLabels(d)));
      t.equal(pdbs.length, 1, `${name}: one PDB covers ${d['metadata']['name']}`);
      t.ok(pdbs[0]?.['spec']['maxUnavailable'] !== undefined, `${name}: ${d['metadata']['name']} can still be drained`);
    }
    for (const hpa of ofKind(docs, 'HorizontalPodAutoscaler')) {
      const target = find(docs, 'Deployment', hpa['spec']['scaleTargetRef']['name']);
      t.equal(target['spec']['replicas'], undefined, `${name}: ${target['metadata']['name']} leaves replicas to its HPA`);
      t.ok((hpa['spec']['metrics'] as K8s[]).some((m) => m['resource']?.name === 'cpu'), `${name}: scales on CPU`);
    }
  }
  const prod = find(build('deploy/k8s/overlays/prod'), 'HorizontalPodAutoscaler', 'aijob-worker');
  t.ok((prod['spec']['metrics'] as K8s[]).some((m) => m['external']?.metric?.name === 'aijob_queue_depth'), 'prod also scales on aijob_queue_depth');
});

t.test('one image runs every workload, chosen by its argument', async (t) => {
  const images = new Set([...ofKind(base, 'Deployment'), ...ofKind(base, 'Job')].map((d) => String(containerOf(d)['image']).split(':')[0]));
  t.same([...images], ['ghcr.io/aijob/aijob']);
  for (const service of services) t.same(containerOf(find(base, 'Deployment', `aijob-${service}`))['args'], [service]);
});
