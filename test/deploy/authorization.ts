// An Istio AuthorizationPolicy evaluator for the subset istio/ uses (principals, ports,
// paths, methods; ALLOW and DENY), so tests can ask whether a caller may make a call.
// Conditions it does not model throw instead of being ignored.
import type { K8s } from './manifest-files.js';

export interface Call {
  /** The caller's mTLS identity; undefined for plaintext callers (outside the mesh). */
  principal?: string;
  /** The workload called: its namespace and pod labels. */
  namespace: string;
  labels: Record<string, string>;
  port: number;
  path: string;
  method?: string;
}

/** Istio's string match: exact, `prefix*`, `*suffix` or `*`. */
function like(pattern: string, value: string | undefined): boolean {
  if (value === undefined) return false;
  if (pattern === '*') return true;
  if (pattern.endsWith('*')) return value.startsWith(pattern.slice(0, -1));
  if (pattern.startsWith('*')) return value.endsWith(pattern.slice(1));
  return pattern === value;
}

const anyLike = (patterns: string[] | undefined, value: string | undefined) => !patterns || patterns.some((p) => like(p, value));

function sourceMatches(source: K8s, call: Call): boolean {
  for (const k of Object.keys(source)) if (k !== 'principals') throw new Error(`source.${k} is not evaluated`);
  return anyLike(source['principals'], call.principal);
}

function operationMatches(op: K8s, call: Call): boolean {
  for (const k of Object.keys(op)) if (!['ports', 'paths', 'methods'].includes(k)) throw new Error(`operation.${k} is not evaluated`);
  return anyLike(op['ports'], String(call.port)) && anyLike(op['paths'], call.path) && anyLike(op['methods'], call.method ?? 'POST');
}

function ruleMatches(rule: K8s, call: Call): boolean {
  if (rule['when']) throw new Error('rule.when is not evaluated');
  const from = (rule['from'] ?? []) as K8s[];
  const to = (rule['to'] ?? []) as K8s[];
  return (from.length === 0 || from.some((f) => sourceMatches(f['source'], call))) &&
    (to.length === 0 || to.some((o) => operationMatches(o['operation'], call)));
}

const applies = (p: K8s, call: Call) => p['metadata']['namespace'] === call.namespace &&
  Object.entries((p['spec']['selector']?.matchLabels ?? {}) as Record<string, string>).every(([k, v]) => call.labels[k] === v);

/** Whether the namespace's policies let the call through (DENY first, then ALLOW). */
export function meshAllows(policies: K8s[], call: Call): boolean {
  const relevant = policies.filter((p) => applies(p, call));
  const action = (p: K8s) => p['spec']['action'] ?? 'ALLOW';
  if (relevant.some((p) => action(p) === 'DENY' && (p['spec']['rules'] ?? []).some((r: K8s) => ruleMatches(r, call)))) return false;
  const allows = relevant.filter((p) => action(p) === 'ALLOW');
  return allows.length === 0 || allows.some((p) => (p['spec']['rules'] ?? []).some((r: K8s) => ruleMatches(r, call)));
}
