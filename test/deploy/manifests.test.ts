import t from 'tap';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parse } from 'yaml';
import { z } from 'zod';
import * as apps from 'kubernetes-models/apps/v1';
import * as core from 'kubernetes-models/v1';
import * as batch from 'kubernetes-models/batch/v1';
import * as autoscaling from 'kubernetes-models/autoscaling/v2';
import * as policy from 'kubernetes-models/policy/v1';
import * as networking from 'kubernetes-models/networking.k8s.io/v1';
import * as istioNet from '@kubernetes-models/istio/networking.istio.io/v1';
import * as istioSec from '@kubernetes-models/istio/security.istio.io/v1';
import * as istioTel from '@kubernetes-models/istio/telemetry.istio.io/v1';
import { repoRoot } from '../helpers/processes.js';
import { documents, isKubernetes, yamlFiles, type Doc } from './manifest-files.js';

const models: Record<string, Record<string, new (o: never) => { validate(): void }>> = {
  'apps/v1': apps as never, v1: core as never, 'batch/v1': batch as never, 'autoscaling/v2': autoscaling as never,
  'policy/v1': policy as never, 'networking.k8s.io/v1': networking as never, 'networking.istio.io/v1': istioNet as never,
  'security.istio.io/v1': istioSec as never, 'telemetry.istio.io/v1': istioTel as never,
};
/** Custom resources without bundled schemas: checked for the fields that matter. */
const crds: Record<string, (o: Record<string, any>) => boolean> = {
  'monitoring.coreos.com/v1/ServiceMonitor': (o) => Array.isArray(o['spec']?.endpoints) && !!o['spec']?.selector,
  'monitoring.coreos.com/v1/PrometheusRule': (o) => Array.isArray(o['spec']?.groups) && o['spec'].groups.length > 0,
  'postgresql.cnpg.io/v1/Cluster': (o) => o['spec']?.instances >= 3 && !!o['spec']?.storage?.size,
  'postgresql.cnpg.io/v1/ScheduledBackup': (o) => !!o['spec']?.schedule && !!o['spec']?.cluster?.name,
  'kustomize.config.k8s.io/v1beta1/Kustomization': (o) => Array.isArray(o['resources']),
};

const all = documents(yamlFiles('deploy', 'istio'));
/** Overlay patches are partial objects: they must patch a base resource, not validate alone. */
const patchFiles = new Set(all.filter((d) => d.file.endsWith('kustomization.yaml'))
  .flatMap((k) => (k.obj['patches'] ?? []).map((p: { path: string }) => join(dirname(k.file), p.path))));
const kube = all.filter((d) => isKubernetes(d.obj) && !patchFiles.has(d.file));
const patches = all.filter((d) => patchFiles.has(d.file));
const base = kube.filter((d) => d.file.startsWith('deploy/k8s/base/'));
const ofKind = (kind: string, docs = base) => docs.filter((d) => d.obj['kind'] === kind);

async function schemaOf(service: string): Promise<z.ZodRawShape> {
  const mod = await import(join(repoRoot, `services/${service}/dist/config.js`)) as Record<string, unknown>;
  return Object.values(mod).find((v): v is z.ZodRawShape => !!v && typeof v === 'object' && 'LOG_LEVEL' in v)!;
}

t.test('every manifest parses and validates against the Kubernetes and Istio schemas', async (t) => {
  t.ok(all.length > 40, `${all.length} YAML documents`);
  for (const d of kube) {
    const key = `${d.obj['apiVersion']}/${d.obj['kind']}`;
    const Model = models[d.obj['apiVersion']]?.[d.obj['kind']];
    if (Model) {
      t.doesNotThrow(() => new Model(d.obj as never).validate(), `${d.file}: ${key} ${d.obj['metadata']?.name ?? ''}`);
    } else {
      t.ok(crds[key], `${d.file}: ${key} is a known resource kind`);
      if (crds[key]) t.ok(crds[key]!(d.obj), `${d.file}: ${key} has its essential fields`);
    }
  }
});

t.test('overlay patches patch resources of the base', async (t) => {
  t.ok(patches.length >= 4, `${patches.length} patches`);
  for (const p of patches) {
    t.ok(base.some((b) => b.obj['kind'] === p.obj['kind'] && b.obj['metadata'].name === p.obj['metadata'].name),
      `${p.file}: ${p.obj['kind']} ${p.obj['metadata'].name} exists in the base`);
  }
});

t.test('kustomizations list files that exist', async (t) => {
  for (const k of all.filter((d) => d.file.endsWith('kustomization.yaml'))) {
    for (const r of [...(k.obj['resources'] ?? []), ...(k.obj['patches'] ?? []).map((p: { path: string }) => p.path)]) {
      t.ok(existsSync(join(repoRoot, dirname(k.file), r)), `${k.file}: ${r}`);
    }
  }
  const listed = new Set(parse(readFileSync(join(repoRoot, 'deploy/k8s/base/kustomization.yaml'), 'utf8')).resources as string[]);
  for (const f of readdirSync(join(repoRoot, 'deploy/k8s/base')).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml')) {
    t.ok(listed.has(f), `base/${f} is in the base kustomization`);
  }
});

t.test('services select pods, and ports and env vars agree with the code', async (t) => {
  const deployments = ofKind('Deployment');
  t.same(deployments.map((d) => d.obj['metadata'].name).sort(), ['aijob-auth', 'aijob-job', 'aijob-scheduler', 'aijob-worker']);
  for (const s of ofKind('Service')) {
    const sel = s.obj['spec'].selector as Record<string, string>;
    const target = deployments.find((d) => Object.entries(sel).every(([k, v]) => d.obj['spec'].template.metadata.labels[k] === v));
    t.ok(target, `Service ${s.obj['metadata'].name} selects a Deployment's pods`);
    const container = target!.obj['spec'].template.spec.containers[0];
    for (const port of s.obj['spec'].ports as { name: string; port: number; targetPort: string; appProtocol?: string }[]) {
      t.ok(container.ports.some((p: { name: string; containerPort: number }) => p.name === port.targetPort && p.containerPort === port.port),
        `${s.obj['metadata'].name}:${port.port} targets the container port`);
      if (port.name === 'grpc') t.equal(port.appProtocol, 'grpc', 'port named grpc with appProtocol grpc');
    }
  }
  const production = { auth: ['DATABASE_URL'], job: ['DATABASE_URL', 'AUTH_ADDR'], scheduler: ['DATABASE_URL', 'AUTH_ADDR'], worker: ['SCHEDULER_ADDR'] };
  for (const d of deployments) {
    const service = d.obj['metadata'].name.replace('aijob-', '') as keyof typeof production;
    const shape = await schemaOf(service);
    const defaults = z.object(shape).parse({}) as Record<string, unknown>;
    const c = d.obj['spec'].template.spec.containers[0];
    t.same(c.args, [service], `${service}: the image runs the service by argument`);
    const ports = Object.fromEntries((c.ports as { name: string; containerPort: number }[]).map((p) => [p.name, p.containerPort]));
    t.equal(ports['ops'], defaults['OPS_PORT'], `${service}: ops port is the code's default`);
    if (ports['grpc']) t.equal(ports['grpc'], defaults['GRPC_PORT'], `${service}: gRPC port is the code's default`);
    const names = (c.env as { name: string }[]).map((e) => e.name);
    for (const n of names) t.ok(n in shape || n.startsWith('OTEL_'), `${service}: ${n} is a setting it knows`);
    for (const n of production[service]) t.ok(names.includes(n), `${service}: ${n} is set`);
    for (const [k, v] of Object.entries(shape)) {
      if (!(v as z.ZodType).safeParse(undefined).success) t.ok(names.includes(k), `${service}: required ${k} is set`);
    }
    const sc = c.securityContext;
    t.same([sc.allowPrivilegeEscalation, sc.readOnlyRootFilesystem, sc.capabilities.drop], [false, true, ['ALL']], `${service}: hardened`);
    t.equal(d.obj['spec'].template.spec.securityContext.runAsNonRoot, true);
    t.ok(c.readinessProbe && c.livenessProbe, `${service}: probes`);
    if (ports['grpc']) t.same(c.readinessProbe.grpc, { port: ports['grpc'] }, `${service}: native gRPC readiness probe`);
  }
  const configMap = ofKind('ConfigMap').find((c) => c.obj['metadata'].name === 'aijob-config')!;
  for (const d of deployments) {
    for (const e of d.obj['spec'].template.spec.containers[0].env as { valueFrom?: { configMapKeyRef?: { key: string } } }[]) {
      const key = e.valueFrom?.configMapKeyRef?.key;
      if (key) t.ok(key in configMap.obj['data'], `aijob-config holds ${key}`);
    }
  }
  t.ok(ofKind('Deployment').find((d) => d.obj['metadata'].name === 'aijob-scheduler')!.obj['spec'].replicas >= 2, 'schedulers >= 2');
  t.equal(ofKind('PodDisruptionBudget').length, 4, 'a PDB per service');
  t.ok(ofKind('NetworkPolicy').some((n) => Object.keys(n.obj['spec'].podSelector).length === 0 && n.obj['spec'].policyTypes.length === 2), 'deny by default');
});

t.test('mesh policies name real service accounts, hosts, ports and gRPC methods', async (t) => {
  const istio = kube.filter((d) => d.file.startsWith('istio/'));
  const accounts = new Set(ofKind('ServiceAccount').map((s) => `cluster.local/ns/aijob/sa/${s.obj['metadata'].name}`));
  const external = new Set(['cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account', 'cluster.local/ns/monitoring/sa/prometheus-k8s']);
  for (const p of ofKind('AuthorizationPolicy', istio)) {
    for (const rule of p.obj['spec']?.rules ?? []) {
      for (const from of rule.from ?? []) {
        for (const principal of from.source?.principals ?? []) {
          t.ok(accounts.has(principal) || external.has(principal), `${p.obj['metadata'].name}: ${principal} exists`);
        }
      }
    }
  }
  t.ok(ofKind('AuthorizationPolicy', istio).some((p) => p.obj['metadata'].name === 'deny-all' && Object.keys(p.obj['spec']).length === 0), 'deny by default');
  t.equal(ofKind('PeerAuthentication', istio).find((p) => p.obj['metadata'].namespace === 'istio-system')?.obj['spec'].mtls.mode, 'STRICT');

  const methods = new Set<string>();
  for (const f of readdirSync(join(repoRoot, 'proto/aijob/v1'))) {
    const text = readFileSync(join(repoRoot, 'proto/aijob/v1', f), 'utf8');
    for (const svc of text.matchAll(/service (\w+) \{([\s\S]*?)\n\}/g)) {
      for (const m of svc[2]!.matchAll(/rpc (\w+)\(/g)) methods.add(`/aijob.v1.${svc[1]}/${m[1]}`);
    }
  }
  const services = ofKind('Service');
  const idempotent = /\/(Get|List)\w+$/;
  for (const vs of ofKind('VirtualService', istio)) {
    for (const route of vs.obj['spec'].http) {
      for (const dest of route.route) {
        const svc = services.find((s) => `${s.obj['metadata'].name}.aijob.svc.cluster.local` === dest.destination.host);
        t.ok(svc, `route ${route.name}: host ${dest.destination.host} is a Service`);
        t.ok(svc?.obj['spec'].ports.some((p: { port: number }) => p.port === dest.destination.port.number), `route ${route.name}: port exists`);
      }
      for (const m of route.match) {
        const path = m.uri.exact as string;
        t.ok(methods.has(path), `route ${route.name}: ${path} is a real RPC`);
        if (route.retries.attempts > 0) {
          t.ok(idempotent.test(path) || path.endsWith('/IssueToken'), `${path}: retried only because it is idempotent`);
          t.equal(route.retries.retryOn, 'unavailable', 'retried only on unavailable');
        }
      }
    }
  }
  const ra = ofKind('RequestAuthentication', istio)[0]!;
  t.match(ra.obj['spec'].jwtRules[0].jwksUri, /aijob-auth\.aijob\.svc\.cluster\.local:8001\/\.well-known\/jwks\.json$/, 'JWKS from the auth ops port');
});

t.test('monitoring resources hold exactly what deploy/prometheus and deploy/grafana hold', async (t) => {
  const rule = ofKind('PrometheusRule')[0]!;
  t.same(rule.obj['spec'].groups, parse(readFileSync(join(repoRoot, 'deploy/prometheus/alerts.yml'), 'utf8')).groups,
    'PrometheusRule = alerts.yml (npm run deploy:sync)');
  const dashboards = ofKind('ConfigMap').find((c) => c.obj['metadata'].name === 'aijob-grafana-dashboards')!;
  const files = readdirSync(join(repoRoot, 'deploy/grafana')).filter((f) => f.endsWith('.json'));
  t.same(Object.keys(dashboards.obj['data']).sort(), files.map((f) => `aijob-${f}`).sort());
  for (const f of files) t.equal(dashboards.obj['data'][`aijob-${f}`], readFileSync(join(repoRoot, 'deploy/grafana', f), 'utf8'), `${f} in sync`);
});

t.test('the Dockerfile builds the way the README says', async (t) => {
  const runs = [...readFileSync(join(repoRoot, 'deploy/Dockerfile'), 'utf8').matchAll(/^RUN (.+)$/gm)].map((m) => m[1]!.trim());
  t.ok(runs.length >= 2, `${runs.length} build steps`);
  const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Deployment'));
  let at = 0;
  for (const step of runs) {
    const i = section.indexOf(step, at);
    t.ok(i >= 0, `README's deployment section has "${step}", in order`);
    at = i + 1;
  }
  const entry = readFileSync(join(repoRoot, 'deploy/Dockerfile'), 'utf8');
  t.match(entry, /^USER node$/m, 'runs as a non-root user');
  void ({} as Doc);
});
