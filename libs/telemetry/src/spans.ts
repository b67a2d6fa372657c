import { context, SpanStatusCode, trace, type Attributes, type Span } from '@opentelemetry/api';
import { contextFromTraceparent, currentTraceparent, spanTraceparent } from './trace-context.js';

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
