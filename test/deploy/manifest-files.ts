// Reads the manifests under deploy/ and istio/ and builds kustomizations the way
// `kubectl apply -k` would for what they use (resources, patches, replicas, images,
// namespace, labels), so tests check what a cluster receives without a kustomize binary.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import { isScalar, parseAllDocuments, visit } from 'yaml';
import { repoRoot } from '../helpers/processes.js';

/** A manifest: free-form YAML, narrowed where tests look. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- manifests are untyped YAML; tests index into them freely
export type K8s = Record<string, any>;

export interface Doc {
  file: string;
  obj: K8s;
}

/** Every YAML file under the given folders of the repository, relative to it. */
export function yamlFiles(...dirs: string[]): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(join(repoRoot, d))) {
      const p = join(d, name);
      if (statSync(join(repoRoot, p)).isDirectory()) walk(p);
      else if (/\.ya?ml$/.test(name)) out.push(p);
    }
  };
  for (const d of dirs) walk(d);
  return out.sort();
}

/**
 * Every non-empty document of the files; throws naming the file on a YAML error, and on a
 * mapping key that is not a string (`8001:`), which kubectl and kustomize refuse
 * ("json: unsupported type: map[interface {}]interface {}").
 */
export function documents(files: string[]): Doc[] {
  return files.flatMap((file) => parseYaml(readFileSync(join(repoRoot, file), 'utf8'), file).map((obj) => ({ file, obj })));
}

/** The non-empty documents of one YAML text, held to the rules of `documents`. */
export function parseYaml(text: string, file = '(text)'): K8s[] {
  return parseAllDocuments(text).map((d) => {
    if (d.errors.length) throw new Error(`${file}: ${d.errors[0]!.message}`);
    visit(d, {
      Pair(_, pair) {
        if (isScalar(pair.key) && typeof pair.key.value !== 'string') {
          throw new Error(`${file}: key ${String(pair.key.value)} is a ${typeof pair.key.value}, not a string: quote it`);
        }
      },
    });
    return d.toJS() as K8s;
  }).filter((o) => o !== null && o !== undefined);
}

export const isKubernetes = (o: K8s) => typeof o['apiVersion'] === 'string' && typeof o['kind'] === 'string';
export const isKustomization = (o: K8s) => o['kind'] === 'Kustomization';
export const readText = (file: string) => readFileSync(join(repoRoot, file), 'utf8');

/** The files a kustomization names (resources that are files, and patches). */
export function kustomizationFiles(file: string): { resources: string[]; patches: string[] } {
  const k = documents([file])[0]!.obj;
  const at = (p: string) => normalize(join(dirname(file), p));
  return {
    resources: ((k['resources'] ?? []) as string[]).map(at),
    patches: ((k['patches'] ?? []) as { path: string }[]).map((p) => at(p.path)),
  };
}

const isObject = (v: unknown): v is K8s => typeof v === 'object' && v !== null && !Array.isArray(v);
const named = (v: unknown[]) => v.every((e) => isObject(e) && typeof e['name'] === 'string');

/**
 * A strategic merge patch as Kubernetes applies the parts we use: maps merge, lists of
 * named items (containers, env) merge by name, other lists (HPA metrics) are replaced.
 */
export function strategicMerge(target: unknown, patch: unknown): unknown {
  if (Array.isArray(patch)) {
    if (!Array.isArray(target) || !named(target) || !named(patch)) return patch;
    const out = target.map((t) => {
      const p = patch.find((e) => (e as K8s)['name'] === (t as K8s)['name']);
      return p ? strategicMerge(t, p) : t;
    });
    return [...out, ...patch.filter((p) => !target.some((t) => (t as K8s)['name'] === (p as K8s)['name']))];
  }
  if (isObject(patch) && isObject(target)) {
    const out: K8s = { ...target };
    for (const [k, v] of Object.entries(patch)) out[k] = strategicMerge(target[k], v);
    return out;
  }
  return patch;
}

const clusterScoped = new Set(['Namespace']);

/** The resources `kubectl apply -k <dir>` would send, for the kustomize features we use. */
export function build(dir: string): K8s[] {
  const file = join(dir, 'kustomization.yaml');
  const k = documents([file])[0]!.obj;
  let out: K8s[] = [];
  for (const r of (k['resources'] ?? []) as string[]) {
    const path = normalize(join(dir, r));
    out.push(...(statSync(join(repoRoot, path)).isDirectory() ? build(path) : documents([path]).map((d) => d.obj)));
  }
  for (const p of (k['patches'] ?? []) as { path: string }[]) {
    for (const patch of documents([normalize(join(dir, p.path))]).map((d) => d.obj)) {
      const i = out.findIndex((o) => o['kind'] === patch['kind'] && o['metadata']['name'] === patch['metadata']['name']);
      if (i < 0) throw new Error(`${dir}: patch ${p.path} targets ${patch['kind']} ${patch['metadata']['name']}, not in its resources`);
      out[i] = strategicMerge(out[i], patch) as K8s;
    }
  }
  for (const r of (k['replicas'] ?? []) as { name: string; count: number }[]) {
    const d = out.find((o) => o['kind'] === 'Deployment' && o['metadata']['name'] === r.name);
    if (!d) throw new Error(`${dir}: replicas for ${r.name}, no such Deployment`);
    d['spec'] = { ...d['spec'], replicas: r.count };
  }
  const images = (k['images'] ?? []) as { name: string; newTag: string }[];
  const retag = (c: K8s) => {
    const img = images.find((i) => String(c['image']).split(':')[0] === i.name);
    return img ? { ...c, image: `${img.name}:${img.newTag}` } : c;
  };
  out = out.map((o) => {
    const spec = o['kind'] === 'Job' || o['kind'] === 'Deployment' ? o['spec']['template']['spec']
      : o['kind'] === 'CronJob' ? o['spec']['jobTemplate']['spec']['template']['spec'] : undefined;
    if (spec) spec.containers = spec.containers.map(retag);
    if (spec?.initContainers) spec.initContainers = spec.initContainers.map(retag);
    const labels = Object.assign({}, ...((k['labels'] ?? []) as { pairs: K8s }[]).map((l) => l.pairs));
    const metadata = { ...o['metadata'], labels: { ...o['metadata']['labels'], ...labels } };
    if (k['namespace'] && !clusterScoped.has(o['kind'])) metadata.namespace = k['namespace'];
    return { ...o, metadata };
  });
  return out;
}

export const ofKind = (docs: K8s[], kind: string) => docs.filter((d) => d['kind'] === kind);
export function find(docs: K8s[], kind: string, name: string): K8s {
  const found = docs.find((d) => d['kind'] === kind && d['metadata']['name'] === name);
  if (!found) throw new Error(`no ${kind} ${name}`);
  return found;
}

/** The overlays next to the base, by name. */
export const overlays = () => readdirSync(join(repoRoot, 'deploy/k8s/overlays')).sort();
