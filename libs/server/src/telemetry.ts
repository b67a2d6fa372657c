// Tracing bootstrap, kept apart from the rest of @aijob/server: it must run before
// @grpc/grpc-js is loaded, so that the gRPC instrumentation patches it as it loads.
// Entry points call startTelemetry() first and import the service afterwards.
//
// Only traces are set up (metrics go to Prometheus through prom-client, logs to stdout),
// from the SDK's parts rather than @opentelemetry/sdk-node, which loads every metrics,
// logs and trace exporter there is and cost each process start about 0.4 s of CPU.
import { createRequire } from 'node:module';
import type { Sampler, SpanExporter, SpanProcessor } from '@opentelemetry/sdk-trace';
import type { TextMapPropagator } from '@opentelemetry/api';
import { z } from 'zod';
import { loadConfig } from '@aijob/core';

const otelEnv = {
  OTEL_SDK_DISABLED: z.enum(['true', 'false']).optional(),
  OTEL_SERVICE_NAME: z.string().optional(),
  OTEL_TRACES_EXPORTER: z.string().optional(),
  OTEL_EXPORTER_OTLP_ENDPOINT: z.string().optional(),
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: z.string().optional(),
  OTEL_EXPORTER_OTLP_PROTOCOL: z.enum(['http/protobuf', 'http/json', 'grpc']).optional(),
  OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: z.enum(['http/protobuf', 'http/json', 'grpc']).optional(),
  OTEL_TRACES_SAMPLER: z.enum(['always_on', 'always_off', 'traceidratio', 'parentbased_always_on',
    'parentbased_always_off', 'parentbased_traceidratio']).default('parentbased_always_on'),
  OTEL_TRACES_SAMPLER_ARG: z.coerce.number().min(0).max(1).default(1),
  OTEL_PROPAGATORS: z.string().default('tracecontext,baggage'),
  OTEL_BSP_SCHEDULE_DELAY: z.coerce.number().int().min(0).optional(),
  OTEL_BSP_EXPORT_TIMEOUT: z.coerce.number().int().min(0).optional(),
  OTEL_BSP_MAX_QUEUE_SIZE: z.coerce.number().int().min(1).optional(),
  OTEL_BSP_MAX_EXPORT_BATCH_SIZE: z.coerce.number().int().min(1).optional(),
};

/** Makes spans (so trace ids exist for jobs and logs) without sending them anywhere. */
const keepLocal: SpanProcessor = {
  onStart: () => undefined,
  onEnd: () => undefined,
  forceFlush: async () => undefined,
  shutdown: async () => undefined,
};

let provider: { shutdown(): Promise<void> } | undefined;

/** The OTLP exporter of the configured protocol (each reads its endpoint, headers and timeout from OTEL_EXPORTER_OTLP_*). */
async function otlpExporter(protocol: 'http/protobuf' | 'http/json' | 'grpc'): Promise<SpanExporter> {
  if (protocol === 'grpc') return new (await import('@opentelemetry/exporter-trace-otlp-grpc')).OTLPTraceExporter();
  if (protocol === 'http/json') return new (await import('@opentelemetry/exporter-trace-otlp-http')).OTLPTraceExporter();
  return new (await import('@opentelemetry/exporter-trace-otlp-proto')).OTLPTraceExporter();
}

/**
 * Starts OpenTelemetry tracing: gRPC server spans (and client spans of the calls between
 * our services, see traceClientCalls), the propagators of OTEL_PROPAGATORS (W3C trace
 * context and baggage), the sampler of OTEL_TRACES_SAMPLER / _ARG, and OTLP export per
 * OTEL_EXPORTER_OTLP_* (protocol http/protobuf unless set). Without an endpoint or
 * OTEL_TRACES_EXPORTER, spans are still made, so jobs and log lines carry trace ids, but
 * nothing is exported; OTEL_TRACES_EXPORTER=none likewise; OTEL_BSP_* tune the batching
 * of exports; OTEL_SDK_DISABLED=true turns tracing off.
 */
export async function startTelemetry(service: string): Promise<void> {
  const env = loadConfig(otelEnv);
  if (env.OTEL_SDK_DISABLED === 'true') return;
  const [api, { AsyncLocalStorageContextManager }, core, resources, traces, { registerInstrumentations }, { GrpcInstrumentation }] =
    await Promise.all([
      import('@opentelemetry/api'), import('@opentelemetry/context-async-hooks'), import('@opentelemetry/core'),
      import('@opentelemetry/resources'), import('@opentelemetry/sdk-trace'), import('@opentelemetry/instrumentation'),
      import('@opentelemetry/instrumentation-grpc'),
    ]);

  const exporters = (env.OTEL_TRACES_EXPORTER ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  const exporting = !exporters.includes('none') &&
    (exporters.includes('otlp') || Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT));
  const processors: SpanProcessor[] = [];
  if (exporting) {
    const protocol = env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ?? env.OTEL_EXPORTER_OTLP_PROTOCOL ?? 'http/protobuf';
    processors.push(new traces.BatchSpanProcessor({
      // Unset ones are undefined, which the processor replaces with its defaults.
      exporter: await otlpExporter(protocol),
      scheduledDelayMillis: env.OTEL_BSP_SCHEDULE_DELAY, exportTimeoutMillis: env.OTEL_BSP_EXPORT_TIMEOUT,
      maxQueueSize: env.OTEL_BSP_MAX_QUEUE_SIZE, maxExportBatchSize: env.OTEL_BSP_MAX_EXPORT_BATCH_SIZE,
    }));
  }
  if (exporters.includes('console')) processors.push(new traces.SimpleSpanProcessor({ exporter: new traces.ConsoleSpanExporter() }));

  const ratio = new traces.TraceIdRatioBasedSampler(env.OTEL_TRACES_SAMPLER_ARG);
  const samplers: Record<typeof env.OTEL_TRACES_SAMPLER, () => Sampler> = {
    always_on: () => new traces.AlwaysOnSampler(),
    always_off: () => new traces.AlwaysOffSampler(),
    traceidratio: () => ratio,
    parentbased_always_on: () => new traces.ParentBasedSampler({ root: new traces.AlwaysOnSampler() }),
    parentbased_always_off: () => new traces.ParentBasedSampler({ root: new traces.AlwaysOffSampler() }),
    parentbased_traceidratio: () => new traces.ParentBasedSampler({ root: ratio }),
  };

  const known: Record<string, () => TextMapPropagator> = {
    tracecontext: () => new core.W3CTraceContextPropagator(),
    baggage: () => new core.W3CBaggagePropagator(),
  };
  const propagators: TextMapPropagator[] = [];
  for (const name of env.OTEL_PROPAGATORS.split(',').map((s) => s.trim()).filter((s) => s && s !== 'none')) {
    const make = known[name];
    if (make) propagators.push(make());
    else process.emitWarning(`OTEL_PROPAGATORS: "${name}" is not supported (tracecontext, baggage, none); ignored`);
  }

  const detected = resources.detectResources({
    detectors: [resources.envDetector, resources.hostDetector, resources.processDetector],
  });
  const p = new traces.TracerProvider({
    resource: resources.defaultResource().merge(detected)
      .merge(resources.resourceFromAttributes({ 'service.name': env.OTEL_SERVICE_NAME ?? `aijob-${service}` })),
    sampler: samplers[env.OTEL_TRACES_SAMPLER](),
    spanProcessors: processors.length ? processors : [keepLocal],
  });
  api.context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  api.propagation.setGlobalPropagator(new core.CompositePropagator({ propagators }));
  api.trace.setGlobalTracerProvider(p);
  registerInstrumentations({
    tracerProvider: p,
    instrumentations: [new GrpcInstrumentation({ ignoreGrpcMethods: ['Check', 'Watch', 'ServerReflectionInfo'] })],
  });
  // grpc-js is CommonJS: required here, the instrumentation patches its server as it
  // loads, and the ESM imports that follow get that same module. (An ESM loader hook
  // would also reach the generated clients, but costs every process start about half a
  // second of CPU; client spans come from traceClientCalls instead.)
  createRequire(import.meta.url)('@grpc/grpc-js');
  provider = p;
}

/** Flushes and stops tracing (last shutdown step). */
export async function stopTelemetry(): Promise<void> {
  await provider?.shutdown().catch(() => undefined);
}
