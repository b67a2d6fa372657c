// Every manifest parses and validates against the Kubernetes and Istio schemas; the
// kustomizations hold together; the NATS and Postgres set-ups are the HA ones.
import t from 'tap';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import * as apps from 'kubernetes-models/apps/v1';
import * as core from 'kubernetes-models/v1';
import * as batch from 'kubernetes-models/batch/v1';
import * as autoscaling from 'kubernetes-models/autoscaling/v2';
import * as policy from 'kubernetes-models/policy/v1';
import * as networking from 'kubernetes-models/networking.k8s.io/v1';
// Istio's v1 APIs are its v1beta1 (networking, PeerAuthentication) and v1alpha1 (telemetry)
// ones promoted unchanged; @kubernetes-models/istio ships them all as v1 only in releases
// that need Node 22.
import * as istioNet from '@kubernetes-models/istio/networking.istio.io/v1beta1';
import * as istioSec from '@kubernetes-models/istio/security.istio.io/v1';
import * as istioSecBeta from '@kubernetes-models/istio/security.istio.io/v1beta1';
import * as istioTel from '@kubernetes-models/istio/telemetry.istio.io/v1alpha1';
import * as istioInstall from '@kubernetes-models/istio/install.istio.io/v1alpha1';
import { repoRoot } from '../helpers/processes.js';
import {
  build, documents, find, isKubernetes, isKustomization, kustomizationFiles, overlays, parseYaml, yamlFiles, type K8s,
} from './manifest-files.js';

type Model = new (o: never) => { validate(): void };
const models: Record<string, Record<string, Model>> = {
  'apps/v1': apps as never, v1: core as never, 'batch/v1': batch as never, 'autoscaling/v2': autoscaling as never,
  'policy/v1': policy as never, 'networking.k8s.io/v1': networking as never, 'networking.istio.io/v1': istioNet as never,
  'security.istio.io/v1': { PeerAuthentication: istioSecBeta.PeerAuthentication, ...istioSec } as never, 'telemetry.istio.io/v1': istioTel as never,
  'install.istio.io/v1alpha1': istioInstall as never,
};
/** The apiVersion a model's schema names, where it is not the manifest's own. */
const schemaVersion: Record<string, string> = {
  'networking.istio.io/v1': 'networking.istio.io/v1beta1', 'telemetry.istio.io/v1': 'telemetry.istio.io/v1alpha1',
  'security.istio.io/v1/PeerAuthentication': 'security.istio.io/v1beta1',
};
const asSchema = (o: K8s): K8s => ({ ...o, apiVersion: schemaVersion[`${o['apiVersion']}/${o['kind']}`] ?? schemaVersion[o['apiVersion']] ?? o['apiVersion'] });
/** Custom resources without bundled schemas: checked for the fields that make them work. */
const structural: Record<string, (o: K8s) => string[]> = {
  'monitoring.coreos.com/v1/ServiceMonitor': (o) => [
    ...(Array.isArray(o['spec']?.endpoints) && o['spec'].endpoints.length ? [] : ['spec.endpoints']),
    ...(o['spec']?.selector?.matchLabels ? [] : ['spec.selector.matchLabels']),
    ...((o['spec']?.endpoints ?? []) as K8s[]).flatMap((e, i) => (e['port'] ? [] : [`spec.endpoints[${i}].port`])),
  ],
  'monitoring.coreos.com/v1/PodMonitor': (o) => [
    ...(Array.isArray(o['spec']?.podMetricsEndpoints) && o['spec'].podMetricsEndpoints.length ? [] : ['spec.podMetricsEndpoints']),
    ...(o['spec']?.selector?.matchLabels ? [] : ['spec.selector.matchLabels']),
    ...((o['spec']?.podMetricsEndpoints ?? []) as K8s[]).flatMap((e, i) => (e['port'] ? [] : [`spec.podMetricsEndpoints[${i}].port`])),
  ],
  'monitoring.coreos.com/v1/PrometheusRule': (o) => ((o['spec']?.groups ?? []) as K8s[]).length === 0 ? ['spec.groups'] :
    (o['spec'].groups as K8s[]).flatMap((g) => (typeof g['name'] === 'string' && Array.isArray(g['rules']) &&
      (g['rules'] as K8s[]).every((r) => typeof r['expr'] === 'string' && (r['alert'] || r['record'])) ? [] : [`group ${g['name']}`])),
  'postgresql.cnpg.io/v1/Cluster': (o) => [
    ...(o['spec']?.instances >= 3 ? [] : ['spec.instances >= 3']),
    ...(o['spec']?.storage?.size ? [] : ['spec.storage.size']),
    ...(o['spec']?.bootstrap?.initdb?.database ? [] : ['spec.bootstrap.initdb.database']),
    ...(o['spec']?.backup?.barmanObjectStore?.destinationPath ? [] : ['spec.backup.barmanObjectStore.destinationPath']),
  ],
  'postgresql.cnpg.io/v1/ScheduledBackup': (o) => [
    ...(o['spec']?.schedule ? [] : ['spec.schedule']), ...(o['spec']?.cluster?.name ? [] : ['spec.cluster.name']),
  ],
};

const all = documents(yamlFiles('deploy', 'istio'));
const kustomizations = all.filter((d) => isKustomization(d.obj));
const patchFiles = new Set(kustomizations.flatMap((k) => kustomizationFiles(k.file).patches));
/** Complete resources; overlay patches are partial and only valid once applied. */
const resources = all.filter((d) => isKubernetes(d.obj) && !isKustomization(d.obj) && !patchFiles.has(d.file));

t.test('every YAML document parses, and there are manifests to check', async (t) => {
  t.ok(yamlFiles('deploy/k8s').length >= 10 && yamlFiles('istio').length >= 7, 'deploy/k8s and istio hold the manifests');
  t.ok(resources.length > 40, `${resources.length} resources`);
});

t.test('every resource validates against its Kubernetes or Istio schema', async (t) => {
  for (const d of resources) {
    const key = `${d.obj['apiVersion']}/${d.obj['kind']}`;
    const Model = models[d.obj['apiVersion']]?.[d.obj['kind']];
    const what = `${d.file}: ${d.obj['kind']} ${d.obj['metadata']?.name}`;
    if (Model) t.doesNotThrow(() => new Model(asSchema(d.obj) as never).validate(), what);
    else if (structural[key]) t.same(structural[key]!(d.obj), [], `${what} has its essential fields`);
    else t.fail(`${what}: ${key} is neither a modelled kind nor a known custom resource`);
  }
});

t.test('a schema violation is caught (the validation is real)', async (t) => {
  const deployment = find(build('deploy/k8s/base'), 'Deployment', 'aijob-job');
  const broken = structuredClone(deployment);
  broken['spec']['template']['spec']['containers'][0]['ports'][0]['containerPort'] = 'fifty';
  t.throws(() => new apps.Deployment(broken as never).validate());
});

t.test('a mapping key that is not a string is refused, as kubectl apply -k refuses it', async (t) => {
  t.throws(() => parseYaml('spec:\n  portLevelMtls:\n    8001:\n      mode: PERMISSIVE\n'), /key 8001 is a number/);
  t.same(parseYaml('spec:\n  portLevelMtls:\n    "8001":\n      mode: PERMISSIVE\n'), [{ spec: { portLevelMtls: { '8001': { mode: 'PERMISSIVE' } } } }]);
});

t.test('kustomizations name files that exist, and the base lists every file beside it', async (t) => {
  t.ok(kustomizations.length >= 4, 'base, dev, prod and istio');
  for (const k of kustomizations) {
    const { resources: rs, patches } = kustomizationFiles(k.file);
    t.ok(rs.length > 0, `${k.file} has resources`);
    for (const f of [...rs, ...patches]) t.ok(existsSync(join(repoRoot, f)), `${k.file}: ${f} exists`);
  }
  for (const dir of ['deploy/k8s/base', 'istio']) {
    const listed = new Set(kustomizationFiles(`${dir}/kustomization.yaml`).resources);
    for (const f of readdirSync(join(repoRoot, dir)).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml')) {
      t.ok(listed.has(join(dir, f)), `${dir}/${f} is in its kustomization`);
    }
  }
});

t.test('overlays build: their patches target base resources and keep them valid', async (t) => {
  t.same(overlays(), ['dev', 'prod']);
  t.ok(patchFiles.size >= 4, `${patchFiles.size} patch files`);
  for (const o of overlays()) {
    const docs = build(`deploy/k8s/overlays/${o}`);
    for (const d of docs.filter((d) => models[d['apiVersion']]?.[d['kind']])) {
      const Model = models[d['apiVersion']]![d['kind']]!;
      t.doesNotThrow(() => new Model(asSchema(d) as never).validate(), `${o}: ${d['kind']} ${d['metadata']['name']}`);
    }
    for (const d of docs) t.ok(d['kind'] === 'Namespace' || d['metadata']['namespace'] === 'aijob', `${o}: ${d['kind']} ${d['metadata']['name']} in aijob`);
    for (const d of docs.filter((d) => d['kind'] === 'Deployment')) {
      t.match(d['spec']['template']['spec']['containers'][0]['image'], o === 'dev' ? /:dev$/ : /:\d+\.\d+\.\d+$/, `${o}: image tag`);
    }
  }
  t.throws(() => build('test/deploy/fixtures-missing'), 'a missing kustomization fails the build');
});

t.test('NATS runs as a 3-node JetStream cluster on disk, and prod replicates streams three ways', async (t) => {
  const values = documents(['deploy/nats/values.yaml'])[0]!.obj;
  t.equal(values['config']['cluster']['enabled'], true);
  t.equal(values['config']['cluster']['replicas'], 3);
  t.equal(values['config']['jetstream']['enabled'], true);
  t.equal(values['config']['jetstream']['fileStore']['enabled'], true);
  t.ok(values['config']['jetstream']['fileStore']['pvc']['size'], 'persistent volumes');
  t.equal(values['podTemplate']['topologySpreadConstraints']['kubernetes.io/hostname']['whenUnsatisfiable'], 'DoNotSchedule', 'one node per host');
  const prod = find(build('deploy/k8s/overlays/prod'), 'ConfigMap', 'aijob-common');
  t.equal(Number(prod['data']['NATS_REPLICAS']), 3, 'prod: NATS_REPLICAS=3');
  t.ok(Number(prod['data']['NATS_REPLICAS']) <= values['config']['cluster']['replicas'], 'no more replicas than nodes');
  t.match(find(build('deploy/k8s/base'), 'ConfigMap', 'aijob-common')['data']['NATS_URL'], /^nats:\/\/nats\.aijob\.svc/, 'clients use the chart\'s Service');
});

t.test('Postgres is a CloudNativePG cluster with replicas, WAL archiving and daily backups', async (t) => {
  const docs = documents(['deploy/postgres/cluster.yaml']).map((d) => d.obj);
  const cluster = find(docs, 'Cluster', 'aijob-pg');
  t.ok(cluster['spec']['instances'] >= 3);
  t.equal(cluster['spec']['bootstrap']['initdb']['database'], 'aijob');
  t.ok(cluster['spec']['backup']['retentionPolicy']);
  t.equal(find(docs, 'ScheduledBackup', 'aijob-pg-daily')['spec']['cluster']['name'], 'aijob-pg');
  t.equal(cluster['spec']['inheritedMetadata']['annotations']['sidecar.istio.io/inject'], 'false', 'outside the mesh, like NATS');
});
