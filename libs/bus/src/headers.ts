import { headers, type MsgHdrs } from '@nats-io/transport-node';
import { currentTraceHeaders } from '@aijob/telemetry';

/** NATS headers carrying the W3C trace context of the active span (or of `traceparent`). */
export function traceHeaders(traceparent?: string): MsgHdrs {
  const h = headers();
  const carrier = traceparent ? { traceparent } : currentTraceHeaders();
  for (const [k, v] of Object.entries(carrier)) h.set(k, v);
  return h;
}

/** The traceparent a message carries, or ''. */
export function traceparentOf(h: MsgHdrs | undefined): string {
  return h?.get('traceparent') ?? '';
}
