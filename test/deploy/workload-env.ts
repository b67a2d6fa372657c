// What the code expects of a workload's environment (its config schema, from the
// compiled services) and what the manifests give it (envFrom ConfigMaps, env entries,
// Secret references), so tests can compare the two.
import { join } from 'node:path';
import { loadConfig } from '@aijob/core';
import { repoRoot } from '../helpers/processes.js';
import { readText, type K8s } from './manifest-files.js';

export const services = ['auth', 'gateway', 'job', 'scheduler', 'worker'] as const;
export type Service = (typeof services)[number];
type Shape = Parameters<typeof loadConfig>[0];

/** The env schema services/<name>/src/config.ts exports as `<name>Env` (from dist). */
export async function configShape(service: Service): Promise<Shape> {
  const mod = (await import(join(repoRoot, `services/${service}/dist/config.js`))) as Record<string, unknown>;
  const shape = mod[`${service}Env`];
  if (!shape || typeof shape !== 'object') throw new Error(`services/${service}/dist/config.js exports no ${service}Env`);
  return shape as Shape;
}

/** What the service runs with when nothing is set. */
export const defaults = (shape: Shape) => loadConfig(shape, {}) as Record<string, unknown>;

/** Parses an environment the way the service does at start; throws listing every bad variable. */
export const parseEnv = (shape: Shape, env: Record<string, string>) => loadConfig(shape, env) as Record<string, unknown>;

/** The variables `npm run migrate` reads (migrate-cli.ts builds its schema inline). */
export function migrateVariables(): string[] {
  const src = readText('libs/store/src/migrate-cli.ts');
  const schema = /loadConfig\(\{([^}]*)\}/.exec(src);
  if (!schema) throw new Error('libs/store/src/migrate-cli.ts: no loadConfig({ ... }) found');
  return [...schema[1]!.matchAll(/(\w+):/g)].map((m) => m[1]!);
}

/** Standard OpenTelemetry SDK variables the manifests may set (the SDK reads them itself). */
export const otelVariables = new Set([
  'OTEL_SERVICE_NAME', 'OTEL_RESOURCE_ATTRIBUTES', 'OTEL_SDK_DISABLED', 'OTEL_TRACES_EXPORTER',
  'OTEL_EXPORTER_OTLP_ENDPOINT', 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', 'OTEL_EXPORTER_OTLP_PROTOCOL',
  'OTEL_TRACES_SAMPLER', 'OTEL_TRACES_SAMPLER_ARG', 'OTEL_PROPAGATORS', 'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL',
  'OTEL_EXPORTER_OTLP_HEADERS', 'OTEL_EXPORTER_OTLP_TIMEOUT', 'OTEL_BSP_SCHEDULE_DELAY', 'OTEL_BSP_EXPORT_TIMEOUT',
  'OTEL_BSP_MAX_QUEUE_SIZE', 'OTEL_BSP_MAX_EXPORT_BATCH_SIZE',
]);

/** Stand-ins for Secret values, shaped like the real ones, so the schemas can parse them. */
const secretSamples: Record<string, string> = {
  NATS_AUTH_PASSWORD: 'a'.repeat(48),
  NATS_JOB_PASSWORD: 'b'.repeat(48),
  NATS_SCHEDULER_PASSWORD: 'c'.repeat(48),
  NATS_WORKER_PASSWORD: 'd'.repeat(48),
  NATS_GATEWAY_PASSWORD: 'g'.repeat(48),
  DATABASE_URL: 'postgres://aijob:secret@aijob-pg-rw:5432/aijob?sslmode=require',
  INTERNAL_TOKEN: 'x'.repeat(48),
  LLM_PROVIDERS: '{}',
  AIJOB_BOOTSTRAP_API_KEY: `aijob_${'k'.repeat(40)}`,
  SIGNING_KEY_ENCRYPTION_KEY: Buffer.alloc(32, 7).toString('base64'),
};

export interface ResolvedEnv {
  /** Variable → value, Secrets and pod fields replaced by samples. */
  values: Record<string, string>;
  /** Variable → where it comes from: `configMap/<name>`, `secret/<name>`, `value`, `field`. */
  source: Record<string, string>;
  /** Secret keys referenced, and whether each is optional. */
  secrets: { name: string; key: string; optional: boolean }[];
  /** References that do not resolve, and variables set twice. */
  problems: string[];
}

/** A container's environment as the kubelet would build it from the given resources. */
export function containerEnv(docs: K8s[], container: K8s): ResolvedEnv {
  const out: ResolvedEnv = { values: {}, source: {}, secrets: [], problems: [] };
  const configMap = (name: string) => docs.find((d) => d['kind'] === 'ConfigMap' && d['metadata']['name'] === name);
  const set = (name: string, value: string, source: string) => {
    if (name in out.values) out.problems.push(`${name} set by ${out.source[name]} and again by ${source}`);
    out.values[name] = value;
    out.source[name] = source;
  };
  for (const from of (container['envFrom'] ?? []) as K8s[]) {
    const ref = from['configMapRef'];
    if (!ref) {
      out.problems.push(`envFrom ${JSON.stringify(from)}: only ConfigMaps (Secrets are referenced key by key)`);
      continue;
    }
    const cm = configMap(ref.name);
    if (!cm) out.problems.push(`envFrom: no ConfigMap ${ref.name}`);
    for (const [k, v] of Object.entries((cm?.['data'] ?? {}) as Record<string, string>)) set(k, String(v), `configMap/${ref.name}`);
  }
  for (const e of (container['env'] ?? []) as K8s[]) {
    const vf = e['valueFrom'];
    if (!vf) set(e['name'], String(e['value'] ?? ''), 'value');
    else if (vf.configMapKeyRef) {
      const { name, key } = vf.configMapKeyRef;
      const v = configMap(name)?.['data']?.[key];
      if (v === undefined) out.problems.push(`${e['name']}: ConfigMap ${name} has no ${key}`);
      set(e['name'], String(v ?? ''), `configMap/${name}`);
    } else if (vf.secretKeyRef) {
      const { name, key, optional } = vf.secretKeyRef;
      out.secrets.push({ name, key, optional: optional === true });
      if (!(key in secretSamples)) out.problems.push(`${e['name']}: no sample for Secret key ${key} (add one to workload-env.ts)`);
      set(e['name'], secretSamples[key] ?? '', `secret/${name}`);
    } else if (vf.fieldRef) {
      set(e['name'], 'aijob-pod-7d9f8c-x2x9z', 'field');
    } else {
      out.problems.push(`${e['name']}: unsupported valueFrom ${JSON.stringify(vf)}`);
    }
  }
  return out;
}

/** The port of an address like `host:port`, `dns:///host:port` or a URL. */
export function portOf(address: string): number {
  const m = /:(\d+)(?:\/.*)?$/.exec(address.split(',')[0]!.trim());
  if (!m) throw new Error(`no port in ${address}`);
  return Number(m[1]);
}
