import client from 'prom-client';

export const registry = client.register;
let defaultsOn = false;

/** Process metrics (CPU, RSS, event loop lag, GC) on the shared registry, once. */
export function collectProcessMetrics(): void {
  if (defaultsOn) return;
  defaultsOn = true;
  client.collectDefaultMetrics({ register: registry });
}

/** The counter of that name, created on first use (so modules can share one). */
export function counter<L extends string>(name: string, help: string, labelNames: readonly L[] = []) {
  return (registry.getSingleMetric(name) as client.Counter<L> | undefined) ??
    new client.Counter<L>({ name, help, labelNames, registers: [registry] });
}

export function gauge<L extends string>(name: string, help: string, labelNames: readonly L[] = [],
  collect?: (this: client.Gauge<L>) => void | Promise<void>) {
  return (registry.getSingleMetric(name) as client.Gauge<L> | undefined) ??
    new client.Gauge<L>({ name, help, labelNames, registers: [registry], ...(collect ? { collect } : {}) });
}

export function histogram<L extends string>(name: string, help: string, labelNames: readonly L[] = [],
  buckets: number[] = latencyBuckets) {
  return (registry.getSingleMetric(name) as client.Histogram<L> | undefined) ??
    new client.Histogram<L>({ name, help, labelNames, buckets, registers: [registry] });
}

/** Seconds, from 1 ms to 60 s: fine at the low end where dispatch latency lives. */
export const latencyBuckets = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
];

/** Seconds, from 1 ms to 1 h, for job execution. */
export const durationBuckets = [
  0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600,
];
