// The runbooks in docs/operations.md (and the README's Deployment section) only use
// commands that work: CLI commands and flags the CLI has, RPCs and request fields the
// protos have on the ports that serve them, and resources and files the manifests have.
import t from 'tap';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { repoRoot } from '../helpers/processes.js';
import { messageFields, protoRpcs, servedBy } from './contracts.js';
import { build, documents, ofKind, readText, yamlFiles, type K8s } from './manifest-files.js';
import { configShape, defaults, services } from './workload-env.js';

const run = promisify(execFile);
const doc = readText('docs/operations.md');
const readme = readText('README.md');
const deployment = readme.slice(readme.indexOf('## Deployment'), readme.indexOf('\n## ', readme.indexOf('## Deployment') + 1));
/** Lines of the text with shell continuations joined. */
const lines = (text: string) => text.replace(/\\\n\s*/g, ' ').split('\n');
const base = build('deploy/k8s/base');
const everything: K8s[] = [...base, ...build('istio'), ...documents(['deploy/postgres/cluster.yaml', ...yamlFiles('deploy/k8s/jobs')]).map((d) => d.obj)];

t.test('the runbooks exist and say how to reach the services', async (t) => {
  t.ok(deployment.length > 500, 'the README has a Deployment section');
  t.match(deployment, /docs\/operations\.md/, 'which links the runbooks');
  for (const h of ['Job stuck pending', 'Job stuck running', 'API answering RESOURCE_EXHAUSTED', 'NATS and Postgres trouble',
    'Scaling workers', 'Draining a queue before maintenance', 'Leader failover', 'Backup and restore', 'Disaster recovery from Postgres']) {
    t.match(doc, new RegExp(`^## ${h}$`, 'm'), `section: ${h}`);
  }
});

t.test('every `npx aijob` command and flag exists in the CLI', async (t) => {
  const uses = new Map<string, Set<string>>();
  for (const line of lines(doc)) {
    for (const m of line.matchAll(/npx aijob ([^`#|>;&]*)/g)) {
      const words = m[1]!.trim().split(/\s+/);
      const [group, command] = words;
      const key = `${group} ${command}`;
      const flags = uses.get(key) ?? new Set<string>();
      for (const w of words) if (w.startsWith('--')) flags.add(w.split('=')[0]!);
      uses.set(key, flags);
    }
  }
  t.ok(uses.size >= 15, `${uses.size} CLI commands used`);
  const cli = join(repoRoot, 'libs/cli/bin/aijob.mjs');
  await Promise.all([...uses].map(async ([key, flags]) => {
    const { stdout } = await run(process.execPath, [cli, ...key.split(' '), '--help'], { cwd: repoRoot });
    t.ok(stdout.startsWith(`aijob ${key} `) || stdout.startsWith(`aijob ${key}\n`), `aijob ${key} is a command`);
    for (const f of flags) t.match(stdout, new RegExp(`^\\s+${f} `, 'm'), `aijob ${key} takes ${f}`);
  }));
});

t.test('every grpcurl call names a real RPC, on a port serving it, with fields its request has', async (t) => {
  const rpcs = protoRpcs();
  const ports = new Map(await Promise.all(services.map(async (s) => [defaults(await configShape(s))['GRPC_PORT'] as number, s] as const)));
  let calls = 0;
  for (const line of lines(doc).filter((l) => /grpcurl\s+-/.test(l) && !/\slist(\s|$)/.test(l))) {
    const m = /\s((?:aijob\.v1|grpc\.health\.v1)\.\w+)\/(\w+)/.exec(line);
    t.ok(m, `names a method: ${line.trim().slice(0, 80)}`);
    if (!m) continue;
    calls++;
    const [service, method] = [m[1]!.split('.').pop()!, m[2]!];
    const target = /\s(localhost|api\.aijob\.example\.com):(\d+)\s/.exec(line);
    if (m[1]!.startsWith('grpc.health')) {
      t.ok(target && ports.has(Number(target[2])), 'health checked on a gRPC port');
      continue;
    }
    if (/once available/.test(line)) continue;
    t.ok(rpcs.some((r) => r.service === service && r.method === method), `${service}/${method} is in proto/aijob/v1`);
    if (target?.[1] === 'localhost') {
      const s = ports.get(Number(target[2]));
      t.ok(s && servedBy(s).includes(service), `port ${target[2]} (${s}) serves ${service}`);
    }
    const body = /-d '(\{.*?\})'/.exec(line)?.[1] ?? /-d "(\{.*?\})"/.exec(line)?.[1]?.replace(/\\"/g, '"').replace(/\$\w+/g, 'x');
    if (body) {
      const fields = messageFields(`${method}Request`);
      for (const k of Object.keys(JSON.parse(body) as object)) t.ok(fields.has(k), `${method}Request has ${k}`);
    }
  }
  t.ok(calls >= 8, `${calls} grpcurl calls checked`);
});

t.test('kubectl commands name resources the manifests create', async (t) => {
  const has = (kind: string, name: string) => everything.some((d) => d['kind'] === kind && d['metadata']['name'] === name);
  const chart: Record<string, string[]> = { Deployment: ['nats-box'] };
  const refs: [string, string][] = [];
  // Jobs the runbooks create from a CronJob of the manifests exist once created.
  const fromCronJobs = new Set<string>();
  for (const m of doc.matchAll(/create job (aijob-[\w-]+) --from=cronjob\/(aijob-[\w-]+)/g)) {
    t.ok(has('CronJob', m[2]!), `CronJob ${m[2]} exists`);
    fromCronJobs.add(m[1]!);
  }
  for (const text of [doc, deployment]) {
    for (const m of text.matchAll(/\b(?:deploy|deployment)\/((?:aijob|nats)-[\w-]+)/g)) refs.push(['Deployment', m[1]!]);
    for (const m of text.matchAll(/\bsvc\/(aijob-[\w-]+)/g)) refs.push(['Service', m[1]!]);
    for (const m of text.matchAll(/\b(?:job\/|delete job )(aijob-[\w-]+)/g)) refs.push(['Job', m[1]!]);
    for (const m of text.matchAll(/\bhpa ([\w-]+)/g)) refs.push(['HorizontalPodAutoscaler', m[1]!]);
    for (const m of text.matchAll(/\b(?:get cluster|cnpg \w+) ([\w-]+)/g)) refs.push(['Cluster', m[1]!]);
  }
  t.ok(refs.length >= 10, `${refs.length} references`);
  for (const [kind, name] of refs) t.ok(has(kind, name) || chart[kind]?.includes(name) || (kind === 'Job' && fromCronJobs.has(name)), `${kind} ${name} exists`);
  const components = new Set(ofKind(base, 'Deployment').map((d) => d['spec']['template']['metadata']['labels']['app.kubernetes.io/component']));
  for (const m of doc.matchAll(/app\.kubernetes\.io\/component=(\w+)/g)) t.ok(components.has(m[1]), `pods labelled component=${m[1]}`);
  for (const m of doc.matchAll(/`(aijob-[a-z-]+)`/g)) {
    // aijob-worker-gpu: the pool Scaling workers has you create (worker-pools.test.ts builds it).
    t.ok(['aijob-secrets', 'aijob-worker-gpu'].includes(m[1]!) || fromCronJobs.has(m[1]!) || everything.some((d) => d['metadata']?.name === m[1]), `${m[1]} is a resource`);
  }
  for (const m of doc.matchAll(/\b(?:pod\/|cp |exec )(aijob-[\w-]+)[: ]/g)) t.ok(has('Pod', m[1]!), `Pod ${m[1]} exists`);
});

t.test('files and paths the docs point to exist', async (t) => {
  const paths = new Set<string>();
  for (const text of [doc, deployment]) {
    for (const m of text.matchAll(/(?:-f|-k|`)\s*((?:deploy|istio|docs)(?:\/[\w.-]+)*)/g)) paths.add(m[1]!.replace(/\.$/, ''));
  }
  t.ok(paths.size >= 6, [...paths].join(', '));
  for (const p of paths) t.ok(existsSync(join(repoRoot, p)), `${p} exists`);
});
