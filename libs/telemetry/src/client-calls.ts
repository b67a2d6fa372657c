import * as grpc from '@grpc/grpc-js';
import { context, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { currentTraceHeaders } from './trace-context.js';

const tracer = () => trace.getTracer('aijob');

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

/**
 * Channel options for calls between our services. Reconnect backoff stays short (grpc-js
 * otherwise waits up to two minutes between attempts), so a restarted or rescheduled
 * peer is found again within a couple of seconds; calls made meanwhile wait for it
 * (waitForReady) within their deadline instead of failing at once. Each call has a client
 * span, and the callee continues its trace.
 */
export const internalChannelOptions: grpc.ClientOptions = {
  interceptors: [traceClientCalls],
  'grpc.keepalive_time_ms': 30_000,
  'grpc.initial_reconnect_backoff_ms': 250,
  'grpc.max_reconnect_backoff_ms': 2_000,
};
