// The audit archive runs as a (suspended) CronJob onto a volume of its own, with only what
// audit-archive.js reads and only Postgres to reach; the reader pod mounts that volume
// where the archive wrote; overlays give it the services' image.
import t from 'tap';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../helpers/processes.js';
import { build, documents, find, overlays, readText, type K8s } from './manifest-files.js';
import { allowed } from './network-policy.js';
import { containerEnv } from './workload-env.js';

const base = build('deploy/k8s/base');
const cron = find(base, 'CronJob', 'aijob-audit-archive');
const pod = cron['spec']['jobTemplate']['spec']['template'];
const c = pod['spec']['containers'][0] as K8s;
const reader = find(documents(['deploy/k8s/jobs/audit-archive-reader.yaml']).map((d) => d.obj), 'Pod', 'aijob-audit-archive-reader');
const arg = (name: string) => (c['args'] as string[])[(c['args'] as string[]).indexOf(name) + 1];
const mountOf = (p: K8s, path: string) => ((p['spec']['containers'][0]['volumeMounts'] ?? []) as K8s[])
  .find((m) => path === m['mountPath'] || path.startsWith(`${m['mountPath']}/`));
const claimOf = (p: K8s, volume: string) => (p['spec']['volumes'] as K8s[]).find((v) => v['name'] === volume)?.['persistentVolumeClaim']?.claimName;

t.test('a suspended CronJob runs the archive script with only what it reads', async (t) => {
  t.equal(cron['spec']['suspend'], true, 'it deletes rows: run on purpose (or unsuspend)');
  t.equal(cron['spec']['concurrencyPolicy'], 'Forbid');
  t.same(c['command'], ['node', 'services/job/dist/audit-archive.js']);
  t.ok(existsSync(join(repoRoot, 'services/job/dist/audit-archive.js')), 'the build makes it');
  const src = readText('services/job/src/audit-archive.ts');
  const reads = [.../loadConfig\(\{([^}]*)\}/.exec(src)![1]!.matchAll(/(\w+):/g)].map((m) => m[1]!);
  const env = containerEnv(base, c);
  t.same(env.problems, []);
  t.same(Object.keys(env.values).sort(), reads.sort(), 'exactly the variables audit-archive.ts reads');
  t.match(src, /'older-than-days'/);
  t.ok(Number(arg('--older-than-days')) > 0);
  t.equal(pod['metadata']['annotations']['sidecar.istio.io/inject'], 'false', 'no sidecar to keep the pod running');
  t.equal(pod['spec']['securityContext']['runAsNonRoot'], true);
  t.same([c['securityContext']['readOnlyRootFilesystem'], c['securityContext']['capabilities']['drop']], [true, ['ALL']]);
});

t.test('the archive goes to its own volume, which the reader mounts at the same place', async (t) => {
  const out = arg('--out')!;
  const mount = mountOf(cron['spec']['jobTemplate']['spec']['template'], out);
  t.ok(mount, `${out} is on a mounted volume, not the read-only root`);
  const claim = claimOf(pod, mount!['name']);
  t.equal(claim, 'aijob-audit-archive', 'a PersistentVolumeClaim, not an emptyDir that dies with the pod');
  const pvc = find(base, 'PersistentVolumeClaim', claim);
  t.ok(pvc['spec']['resources']['requests']['storage']);
  t.equal(pod['spec']['securityContext']['fsGroup'], c['securityContext']['runAsUser'] ?? pod['spec']['securityContext']['runAsUser'], 'writable by the node user');
  const rmount = mountOf(reader, out);
  t.ok(rmount, 'the reader sees the file at the same path');
  t.equal(claimOf(reader, rmount!['name']), claim, 'on the same claim');
  t.equal(reader['metadata']['namespace'], 'aijob');
  const doc = readText('docs/operations.md');
  t.match(doc, `cp ${reader['metadata']['name']}:${out} `, 'the runbook copies that file from the reader');
  t.match(doc, `--from=cronjob/${cron['metadata']['name']}`, 'and runs the CronJob');
});

t.test('the archive reaches Postgres and nothing else; the reader reaches nothing', async (t) => {
  const policies = base.filter((d) => d['kind'] === 'NetworkPolicy');
  const me = { namespace: 'aijob', labels: pod['metadata']['labels'] as Record<string, string> };
  const postgres = { namespace: 'aijob', labels: { 'cnpg.io/cluster': 'aijob-pg' } };
  const nats = { namespace: 'aijob', labels: { 'app.kubernetes.io/name': 'nats', 'app.kubernetes.io/component': 'nats' } };
  t.ok(allowed(policies, me, postgres, 5432), 'archive -> Postgres');
  t.notOk(allowed(policies, me, nats, 4222), 'archive -> NATS: no');
  t.notOk(allowed(policies, me, { ip: '203.0.113.7' }, 443), 'archive -> internet: no');
  const r = { namespace: 'aijob', labels: reader['metadata']['labels'] as Record<string, string> };
  t.notOk(allowed(policies, r, postgres, 5432), 'reader -> Postgres: no');
  t.notOk(allowed(policies, { namespace: 'default', labels: {} }, r, 8080), 'nobody -> reader');
});

t.test('overlays run the archive with the services\' image', async (t) => {
  for (const o of overlays()) {
    const docs = build(`deploy/k8s/overlays/${o}`);
    const image = find(docs, 'CronJob', 'aijob-audit-archive')['spec']['jobTemplate']['spec']['template']['spec']['containers'][0]['image'];
    t.equal(image, find(docs, 'Deployment', 'aijob-job')['spec']['template']['spec']['containers'][0]['image'], `${o}: ${image}`);
  }
});
