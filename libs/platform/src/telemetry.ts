// Tracing bootstrap, kept apart from the rest of @aijob/platform: it must run before
// @grpc/grpc-js is loaded, so that the gRPC instrumentation patches it as it loads.
// Entry points call startTelemetry() first and import the service afterwards.
import { createRequire } from 'node:module';
import type { SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { z } from 'zod';
import { loadConfig } from './config.js';

const otelEnv = {
  OTEL_SDK_DISABLED: z.enum(['true', 'false']).optional(),
  OTEL_SERVICE_NAME: z.string().optional(),
  OTEL_TRACES_EXPORTER: z.string().optional(),
  OTEL_EXPORTER_OTLP_ENDPOINT: z.string().optional(),
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: z.string().optional(),
};

/** Makes spans (so trace ids exist for jobs and logs) without sending them anywhere. */
const keepLocal: SpanProcessor = {
  onStart: () => undefined,
  onEnd: () => undefined,
  forceFlush: async () => undefined,
  shutdown: async () => undefined,
};

let sdk: { shutdown(): Promise<void> } | undefined;

/**
 * Starts OpenTelemetry: W3C trace context, gRPC client and server spans, and OTLP
 * export configured by the standard OTEL_* variables (OTEL_EXPORTER_OTLP_ENDPOINT,
 * OTEL_EXPORTER_OTLP_PROTOCOL, OTEL_TRACES_SAMPLER, …). Without an endpoint, spans are
 * still made, so jobs and log lines carry trace ids, but nothing is exported.
 */
export async function startTelemetry(service: string): Promise<void> {
  const env = loadConfig(otelEnv);
  if (env.OTEL_SDK_DISABLED === 'true') return;
  const { NodeSDK } = await import('@opentelemetry/sdk-node');
  const { GrpcInstrumentation } = await import('@opentelemetry/instrumentation-grpc');
  const exporting = Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ||
    (env.OTEL_TRACES_EXPORTER && env.OTEL_TRACES_EXPORTER !== 'none'));
  const s = new NodeSDK({
    serviceName: env.OTEL_SERVICE_NAME ?? `aijob-${service}`,
    instrumentations: [new GrpcInstrumentation({ ignoreGrpcMethods: ['Check', 'Watch', 'ServerReflectionInfo'] })],
    // Metrics go to Prometheus (prom-client) and logs to stdout: only traces here.
    metricReaders: [],
    logRecordProcessors: [],
    ...(exporting ? {} : { spanProcessors: [keepLocal] }),
  });
  s.start();
  // grpc-js is CommonJS: required here, the instrumentation patches its server as it
  // loads, and the ESM imports that follow get that same module. (An ESM loader hook
  // would also reach the generated clients, but costs every process start about half a
  // second of CPU; client spans come from traceClientCalls instead.)
  createRequire(import.meta.url)('@grpc/grpc-js');
  sdk = s;
}

/** Flushes and stops tracing (last shutdown step). */
export async function stopTelemetry(): Promise<void> {
  await sdk?.shutdown().catch(() => undefined);
}
