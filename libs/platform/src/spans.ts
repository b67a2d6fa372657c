import { context, SpanStatusCode, trace, type Attributes, type Span } from '@opentelemetry/api';
import { contextFromTraceparent, currentTraceparent } from './trace-context.js';

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

/** A short span marking an instant in a job's trace (a state transition). */
export function markSpan(name: string, traceparent: string | undefined, attributes: Attributes): void {
  tracer().startSpan(name, { attributes }, contextFromTraceparent(traceparent)).end();
}
