import { context, propagation, trace, type Context } from '@opentelemetry/api';

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
  const carrier: Record<string, string> = { traceparent };
  if (tracestate) carrier['tracestate'] = tracestate;
  return propagation.extract(context.active(), carrier);
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
