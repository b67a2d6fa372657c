// A NetworkPolicy evaluator for the subset the manifests use (matchLabels selectors,
// numeric ports, ipBlock), so tests can ask "may A reach B on port P?" the way a CNI
// enforcing the policies would answer. Anything outside the subset throws, so the
// answers never silently come from an unsupported rule.
import type { K8s } from './manifest-files.js';

/** A pod (namespace and labels) or an address outside the cluster. */
export type Endpoint = { namespace: string; labels: Record<string, string> } | { ip: string };

const isPod = (e: Endpoint): e is { namespace: string; labels: Record<string, string> } => 'namespace' in e;

function matches(selector: K8s | undefined, labels: Record<string, string>): boolean {
  if (!selector) return true;
  if (selector['matchExpressions']) throw new Error('matchExpressions are not evaluated');
  return Object.entries((selector['matchLabels'] ?? {}) as Record<string, string>).every(([k, v]) => labels[k] === v);
}

const ipv4 = (ip: string) => ip.split('.').reduce((n, o) => n * 256 + Number(o), 0);
function inCidr(ip: string, cidr: string): boolean {
  const [base, bits] = cidr.split('/');
  const size = 2 ** (32 - Number(bits));
  return Math.floor(ipv4(ip) / size) === Math.floor(ipv4(base!) / size);
}

function peerMatches(peer: K8s, other: Endpoint, policyNamespace: string): boolean {
  if (peer['ipBlock']) {
    const { cidr, except = [] } = peer['ipBlock'] as { cidr: string; except?: string[] };
    return !isPod(other) && inCidr(other.ip, cidr) && !except.some((c) => inCidr(other.ip, c));
  }
  if (!isPod(other)) return false;
  const namespaceOk = peer['namespaceSelector']
    ? matches(peer['namespaceSelector'], { 'kubernetes.io/metadata.name': other.namespace })
    : other.namespace === policyNamespace;
  return namespaceOk && matches(peer['podSelector'], other.labels);
}

function portMatches(ports: K8s[] | undefined, port: number, protocol: string): boolean {
  if (!ports) return true;
  return ports.some((p) => {
    if (typeof p['port'] === 'string') throw new Error(`named port ${p['port']} is not evaluated`);
    return (p['protocol'] ?? 'TCP') === protocol && (p['port'] === undefined || p['port'] === port);
  });
}

/** The types a policy governs; Kubernetes' default when policyTypes is absent. */
const policyTypes = (p: K8s): string[] => p['spec']['policyTypes'] ?? ['Ingress', ...(p['spec']['egress'] ? ['Egress'] : [])];

/** Whether the policies let `self` send (Egress) to, or receive (Ingress) from, `other`. */
function side(policies: K8s[], self: Endpoint, direction: 'Ingress' | 'Egress', other: Endpoint, port: number, protocol: string) {
  if (!isPod(self)) return true;
  const namespaceOf = (p: K8s): string => p['metadata']['namespace'] ?? 'aijob';
  const selecting = policies.filter((p) => namespaceOf(p) === self.namespace &&
    policyTypes(p).includes(direction) && matches(p['spec']['podSelector'], self.labels));
  if (selecting.length === 0) return true;
  return selecting.some((p) => ((direction === 'Ingress' ? p['spec']['ingress'] : p['spec']['egress']) ?? []).some((rule: K8s) => {
    // An absent or empty peer list matches every peer.
    const peers = (rule[direction === 'Ingress' ? 'from' : 'to'] ?? []) as K8s[];
    return portMatches(rule['ports'], port, protocol) &&
      (peers.length === 0 || peers.some((peer) => peerMatches(peer, other, namespaceOf(p))));
  }));
}

/** Whether a connection from `from` to `to` on `port` passes both ends' policies. */
export function allowed(policies: K8s[], from: Endpoint, to: Endpoint, port: number, protocol = 'TCP'): boolean {
  return side(policies, from, 'Egress', to, port, protocol) && side(policies, to, 'Ingress', from, port, protocol);
}
