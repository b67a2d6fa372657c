import { lookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';
import { NonRetryableError, RetryableError } from '@aijob/worker';

/**
 * Addresses no webhook may reach unless private targets are allowed: unspecified,
 * loopback, private, carrier-grade NAT, link-local (cloud metadata at 169.254.169.254),
 * IETF and benchmarking ranges, multicast and reserved; in IPv6 also ::/96 (unspecified,
 * loopback, the old IPv4-compatible form). BlockList matches IPv4-mapped IPv6
 * (::ffff:127.0.0.1) against the IPv4 ranges; addresses that embed an IPv4 one for a
 * translator or relay (NAT64 64:ff9b::/96, 6to4 2002::/16) are judged by that address.
 */
const blocked = new BlockList();
for (const [net, bits] of [['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16],
  ['172.16.0.0', 12], ['192.0.0.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['224.0.0.0', 4], ['240.0.0.0', 4]] as const) {
  blocked.addSubnet(net, bits, 'ipv4');
}
for (const [net, bits] of [['::', 96], ['64:ff9b:1::', 48], ['fc00::', 7], ['fe80::', 10], ['fec0::', 10], ['ff00::', 8]] as const) {
  blocked.addSubnet(net, bits, 'ipv6');
}

/** True for an address in a blocked range (and for anything that is not an IP address). */
export function isPrivate(address: string): boolean {
  const family = isIP(address);
  if (family === 0) return true;
  if (family === 4) return blocked.check(address, 'ipv4');
  const embedded = embeddedIpv4(address);
  return blocked.check(address, 'ipv6') || (embedded !== undefined && blocked.check(embedded, 'ipv4'));
}

/** The IPv4 address inside a NAT64 (64:ff9b::/96) or 6to4 (2002::/16) address. */
function embeddedIpv4(address: string): string | undefined {
  const groups = ipv6Groups(address);
  const v4 = (hi: number, lo: number) => `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  if (groups[0] === 0x64 && groups[1] === 0xff9b && groups.slice(2, 6).every((g) => g === 0)) return v4(groups[6]!, groups[7]!);
  if (groups[0] === 0x2002) return v4(groups[1]!, groups[2]!);
  return undefined;
}

/** The eight 16-bit groups of a valid IPv6 address (a dotted IPv4 tail counts as two). */
function ipv6Groups(address: string): number[] {
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(address);
  const text = dotted
    ? address.slice(0, dotted.index) + `${((+dotted[1]! << 8) | +dotted[2]!).toString(16)}:${((+dotted[3]! << 8) | +dotted[4]!).toString(16)}`
    : address;
  const [head, tail] = text.split('::') as [string, string | undefined];
  const part = (s: string | undefined) => (s ? s.split(':').map((g) => parseInt(g, 16)) : []);
  const h = part(head);
  const t = part(tail);
  return tail === undefined ? h : [...h, ...Array<number>(8 - h.length - t.length).fill(0), ...t];
}

/** A pattern as host and optional port: `host`, `host:port`, `*.example.com`, `[::1]:8080`, `::1`. */
function parsePattern(raw: string): { host: string; port?: string } {
  const p = raw.trim().toLowerCase();
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(p);
  if (bracketed) return { host: bracketed[1]!, port: bracketed[2] };
  if (isIP(p) === 6) return { host: p };
  const m = /^(.*):(\d+)$/.exec(p);
  return m ? { host: m[1]!, port: m[2] } : { host: p };
}

/** Whether `host` on `port` matches a pattern; `*.example.com` matches subdomains, not example.com itself. */
export function hostAllowed(host: string, port: string, patterns: string[]): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, '').replace(/\.$/, '');
  return patterns.some((raw) => {
    const p = parsePattern(raw);
    if (p.port && p.port !== port) return false;
    return p.host.startsWith('*.') ? h.endsWith(p.host.slice(1)) && h.length > p.host.length - 1 : h === p.host;
  });
}

/**
 * Checks a URL against the allow-list, resolves its host once and checks every
 * address. The caller connects to the address returned, not to a second lookup, so
 * DNS rebinding cannot swap a public answer for a private one between check and use.
 */
export async function resolveAllowed(url: URL, o: { allowedHosts: string[]; allowPrivate: boolean }): Promise<{ address: string; family: number }> {
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new NonRetryableError('HTTP_HOST_NOT_ALLOWED', `scheme ${url.protocol} not allowed`);
  const port = url.port || (url.protocol === 'https:' ? '443' : '80');
  if (!hostAllowed(url.hostname, port, o.allowedHosts)) {
    throw new NonRetryableError('HTTP_HOST_NOT_ALLOWED', `host ${url.hostname}:${port} is not in HTTP_ALLOWED_HOSTS`);
  }
  const host = url.hostname.replace(/^\[|\]$/g, '');
  let addresses: { address: string; family: number }[];
  if (isIP(host)) addresses = [{ address: host, family: isIP(host) }];
  else {
    try {
      addresses = await lookup(host, { all: true });
    } catch (err) {
      // A name that does not resolve now may tomorrow (or was a passing DNS failure).
      throw new RetryableError('NETWORK_ERROR', `host ${host} did not resolve (${(err as { code?: string }).code ?? 'lookup failed'})`);
    }
  }
  if (!o.allowPrivate) {
    const bad = addresses.find((a) => isPrivate(a.address));
    if (bad) throw new NonRetryableError('HTTP_HOST_NOT_ALLOWED', `host ${host} resolves to ${bad.address}, a private or reserved address`);
  }
  if (!addresses[0]) throw new RetryableError('NETWORK_ERROR', `host ${host} has no addresses`);
  return addresses[0];
}
