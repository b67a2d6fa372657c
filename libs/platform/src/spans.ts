import * as grpc from '@grpc/grpc-js';
import { context, SpanKind, SpanStatusCode, trace, type Attributes, type Span } from '@opentelemetry/api';
import { contextFromTraceparent, currentTraceHeaders, currentTraceparent, spanTraceparent } from './trace-context.js';

const tracer = () => trace.getTracer('aijob');

/**
 * Runs `fn` in a span that continues the trace of `traceparent` (a job's trace across
 * NATS). Returns what `fn` returns; the span records failures. `fn` gets the span's own
 * traceparent to hand to the next hop.
 */
export async function inSpan<T>(name: string, traceparent: string | undefined, attributes: Attributes,
  fn: (traceparent: string, span: Span) => Promise<T>): Promise<T> {
  const span = tracer().startSpan(name, { attributes }, contextFromTraceparent(traceparent));
  const ctx = trace.setSpan(context.active(), span);
  try {
    return await context.with(ctx, () => fn(currentTraceparent(ctx) || traceparent || '', span));
  } catch (err) {
    span.recordException(err as Error);
    span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
    throw err;
  } finally {
    span.end();
  }
}

/**
 * The traceparent of a new trace's root span, linked to the active span: each job of a
 * batch call gets a trace of its own, and Jaeger links it to the call. '' when tracing is off.
 */
export function linkedRootTraceparent(name: string, attributes: Attributes): string {
  const current = trace.getActiveSpan()?.spanContext();
  const span = tracer().startSpan(name, { root: true, attributes, links: current ? [{ context: current }] : [] });
  const traceparent = currentTraceparent(trace.setSpan(context.active(), span));
  span.end();
  return traceparent;
}

/**
 * A span continuing `traceparent`'s trace, not made active (cheaper than inSpan): for
 * work that hands the trace on by its traceparent without running code under it. The
 * caller ends it, with the error if it failed.
 */
export function childSpan(name: string, traceparent: string | undefined, attributes: Attributes):
  { traceparent: string; end: (err?: unknown) => void } {
  const span = tracer().startSpan(name, { attributes }, contextFromTraceparent(traceparent));
  return {
    traceparent: spanTraceparent(span.spanContext()) || traceparent || '',
    end: (err) => {
      if (err !== undefined) span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
      span.end();
    },
  };
}

/** A short span marking an instant in a job's trace (a state transition). */
export function markSpan(name: string, traceparent: string | undefined, attributes: Attributes): void {
  tracer().startSpan(name, { attributes }, contextFromTraceparent(traceparent)).end();
}

/**
 * Client spans for the calls between our services (job -> auth, worker -> scheduler),
 * with the W3C trace headers the callee's server span continues. The gRPC
 * instrumentation makes the server spans; generated clients bind grpc-js's request
 * functions when they are built, out of its reach without an ESM loader hook that costs
 * every process half a second of CPU at start, so the client half is ours.
 */
export const traceClientCalls: grpc.Interceptor = (options, nextCall) => {
  const path = options.method_definition.path;
  const [service = '', method = ''] = path.slice(1).split('/');
  const span = tracer().startSpan(path.slice(1), {
    kind: SpanKind.CLIENT, attributes: { 'rpc.system': 'grpc', 'rpc.service': service, 'rpc.method': method },
  });
  const ctx = trace.setSpan(context.active(), span);
  const requester = new grpc.RequesterBuilder().withStart((metadata, listener, next) => {
    for (const [k, v] of Object.entries(currentTraceHeaders(ctx))) metadata.set(k, v);
    next(metadata, new grpc.ListenerBuilder().withOnReceiveStatus((status, nextStatus) => {
      span.setAttribute('rpc.grpc.status_code', status.code);
      if (status.code !== grpc.status.OK) span.setStatus({ code: SpanStatusCode.ERROR, message: status.details });
      span.end();
      nextStatus(status);
    }).build());
  }).build();
  return new grpc.InterceptingCall(nextCall(options), requester);
};
