import { context, propagation, trace, TraceFlags, type Context, type SpanContext } from '@opentelemetry/api';

const TRACEPARENT = /^00-([\da-f]{32})-([\da-f]{16})-([\da-f]{2})$/;

/** W3C trace headers of the active context (empty when tracing is off or not sampled). */
export function currentTraceHeaders(ctx: Context = context.active()): Record<string, string> {
  const carrier: Record<string, string> = {};
  propagation.inject(ctx, carrier);
  return carrier;
}

/** The active context's traceparent, or '' when there is none. */
export function currentTraceparent(ctx: Context = context.active()): string {
  return currentTraceHeaders(ctx)['traceparent'] ?? '';
}

/** A context continuing the trace of `traceparent` (and `tracestate`), or the active one. */
export function contextFromTraceparent(traceparent: string | undefined, tracestate?: string): Context {
  if (!traceparent) return context.active();
  // The common case, parsed directly: this runs for every job at every hop.
  const m = tracestate ? null : TRACEPARENT.exec(traceparent);
  if (m) {
    const parent: SpanContext = { traceId: m[1]!, spanId: m[2]!, traceFlags: parseInt(m[3]!, 16) & TraceFlags.SAMPLED, isRemote: true };
    return trace.setSpanContext(context.active(), parent);
  }
  const carrier: Record<string, string> = { traceparent };
  if (tracestate) carrier['tracestate'] = tracestate;
  return propagation.extract(context.active(), carrier);
}

/** The traceparent of a span context, or '' when it is not valid (tracing off). */
export function spanTraceparent(sc: SpanContext): string {
  if (!trace.isSpanContextValid(sc)) return '';
  return `00-${sc.traceId}-${sc.spanId}-${(sc.traceFlags & TraceFlags.SAMPLED) ? '01' : '00'}`;
}

/** Trace id inside a traceparent, or '' (`00-<trace id>-<span id>-<flags>`). */
export function traceIdOf(traceparent: string | undefined): string {
  const parts = traceparent?.split('-');
  return parts && parts.length === 4 && parts[1]!.length === 32 ? parts[1]! : '';
}

/** Trace id of the active span, or ''. */
export function activeTraceId(): string {
  const id = trace.getActiveSpan()?.spanContext().traceId;
  return id && id !== '00000000000000000000000000000000' ? id : '';
}
