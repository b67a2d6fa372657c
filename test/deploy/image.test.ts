// No Docker engine runs here, so the image is checked by what defines it: the
// Dockerfile's build steps are exactly the README's, the final stage runs as a non-root
// user, and the entry point starts each workload the manifests ask for from files the
// build produces.
import t from 'tap';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../helpers/processes.js';
import { build, ofKind, readText, type K8s } from './manifest-files.js';

const dockerfile = readText('deploy/Dockerfile');
/** Instructions, continuation lines joined, comments dropped. */
const instructions = dockerfile.replace(/\\\n\s*/g, ' ').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'))
  .map((l) => { const [op, ...rest] = l.split(/\s+/); return { op: op!.toUpperCase(), args: rest.join(' ') }; });
const stages = instructions.reduce<{ op: string; args: string }[][]>((acc, i) => {
  if (i.op === 'FROM') acc.push([]);
  acc[acc.length - 1]?.push(i);
  return acc;
}, []);
const finalStage = stages[stages.length - 1] ?? [];
const entrypoint = readText('scripts/run-service.mjs');
const entries = Object.fromEntries([...entrypoint.matchAll(/^\s+(\w+): '\.\.\/([^']+)'/gm)].map((m) => [m[1]!, m[2]!]));

t.test('the Dockerfile runs the README\'s build commands, in order, and nothing else', async (t) => {
  const readme = readText('README.md');
  const from = readme.indexOf('## Deployment');
  const section = readme.slice(from, readme.indexOf('\n## ', from + 1));
  const block = /```sh\n([\s\S]*?)```/.exec(section)?.[1] ?? '';
  const readmeSteps = block.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  const runs = instructions.filter((i) => i.op === 'RUN').map((i) => i.args);
  t.ok(readmeSteps.length >= 2, `the README's first Deployment block: ${readmeSteps.join('; ')}`);
  t.same(runs, readmeSteps, 'RUN steps = the README\'s build commands');
  t.ok(readmeSteps.some((s) => /^npm run build\b/.test(s)), 'the build is `npm run build`');
});

t.test('a multi-stage build whose final stage is small and runs as non-root', async (t) => {
  t.ok(stages.length >= 2, `${stages.length} stages`);
  t.notOk(finalStage.some((i) => i.op === 'RUN'), 'nothing is built in the final stage');
  const user = finalStage.filter((i) => i.op === 'USER').pop();
  t.ok(user && !/^(root|0)(:|$)/.test(user.args), `runs as ${user?.args}`);
  const pods = [...ofKind(build('deploy/k8s/base'), 'Deployment'), ...ofKind(build('deploy/k8s/base'), 'Job')];
  for (const p of pods) t.equal(p['spec']['template']['spec']['securityContext']['runAsUser'], 1000, `${p['metadata']['name']}: the image's node user (uid 1000)`);
  t.match(finalStage[0]!.args, /slim|alpine|distroless/, 'a slim base image');
  const copies = finalStage.filter((i) => i.op === 'COPY').map((i) => i.args);
  t.ok(copies.every((c) => c.startsWith('--from=')), 'the final stage takes only build outputs');
  const ignore = readText('.dockerignore').split('\n').map((l) => l.trim());
  for (const p of ['node_modules', '.git', '**/dist']) t.ok(ignore.includes(p), `.dockerignore leaves out ${p}`);
});

t.test('the entry point starts every workload of the manifests from built files', async (t) => {
  const entry = finalStage.find((i) => i.op === 'ENTRYPOINT');
  t.same(JSON.parse(entry?.args ?? '[]'), ['node', 'scripts/run-service.mjs'], 'ENTRYPOINT runs the chooser');
  t.ok(finalStage.some((i) => i.op === 'COPY' && i.args.includes('scripts/run-service.mjs')), 'and copies it');
  const pods: K8s[] = [...ofKind(build('deploy/k8s/base'), 'Deployment'), ...ofKind(build('deploy/k8s/base'), 'Job')];
  for (const p of pods) {
    const arg = p['spec']['template']['spec']['containers'][0]['args'][0] as string;
    t.ok(entries[arg], `${p['metadata']['name']}: "${arg}" is an entry`);
  }
  for (const [name, file] of Object.entries(entries)) {
    t.ok(existsSync(join(repoRoot, file)), `${name}: ${file} is built by npm run build`);
    if (name !== 'migrate') t.equal(file, `services/${name}/dist/main.js`, `${name}: the service's main`);
  }
  const scripts = (JSON.parse(readText('package.json')) as { scripts: Record<string, string> }).scripts;
  t.equal(`node ${entries['migrate']}`, scripts['migrate'], '"migrate" is what `npm run migrate` runs');
});
