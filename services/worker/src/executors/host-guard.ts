import { lookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';
import { NonRetryableError } from '@aijob/worker';

/** Addresses no webhook may reach unless private targets are allowed: loopback, link-local (cloud metadata), private, unspecified, multicast. */
const blocked = new BlockList();
for (const [net, bits] of [['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16],
  ['172.16.0.0', 12], ['192.168.0.0', 16], ['224.0.0.0', 4], ['240.0.0.0', 4]] as const) blocked.addSubnet(net, bits, 'ipv4');
for (const [net, bits] of [['::', 128], ['::1', 128], ['fc00::', 7], ['fe80::', 10], ['ff00::', 8]] as const) {
  blocked.addSubnet(net, bits, 'ipv6');
}

export function isPrivate(address: string): boolean {
  const family = isIP(address);
  if (family === 0) return true;
  if (family === 6 && address.toLowerCase().startsWith('::ffff:')) {
    const v4 = address.slice(7);
    if (isIP(v4) === 4) return blocked.check(v4, 'ipv4');
  }
  return blocked.check(address, family === 4 ? 'ipv4' : 'ipv6');
}

/** `host` or `host:port` patterns; `*.example.com` matches subdomains. */
export function hostAllowed(host: string, port: string, patterns: string[]): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, '');
  return patterns.some((raw) => {
    const [ph, pp] = raw.toLowerCase().split(/:(?=\d+$)/) as [string, string | undefined];
    if (pp && pp !== port) return false;
    return ph.startsWith('*.') ? h.endsWith(ph.slice(1)) && h.length > ph.length - 1 : h === ph;
  });
}

/**
 * Resolves a URL's host once and checks every address. The caller connects to the
 * address returned (not to a second lookup), so DNS rebinding cannot swap it.
 */
export async function resolveAllowed(url: URL, o: { allowedHosts: string[]; allowPrivate: boolean }): Promise<{ address: string; family: number }> {
  const port = url.port || (url.protocol === 'https:' ? '443' : '80');
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new NonRetryableError('HTTP_HOST_NOT_ALLOWED', `scheme ${url.protocol} not allowed`);
  if (!hostAllowed(url.hostname, port, o.allowedHosts)) {
    throw new NonRetryableError('HTTP_HOST_NOT_ALLOWED', `host ${url.hostname}:${port} is not in HTTP_ALLOWED_HOSTS`);
  }
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const addresses = isIP(host) ? [{ address: host, family: isIP(host) }] : await lookup(host, { all: true }).catch(() => {
    throw new NonRetryableError('HTTP_HOST_NOT_ALLOWED', `host ${host} does not resolve`);
  });
  if (!o.allowPrivate) {
    const bad = addresses.find((a) => isPrivate(a.address));
    if (bad) throw new NonRetryableError('HTTP_HOST_NOT_ALLOWED', `host ${host} resolves to ${bad.address}, a private or reserved address`);
  }
  return addresses[0]!;
}
