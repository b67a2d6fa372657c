import { randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import type { Principal, WorkspacePolicy } from '@aijob/contracts';
import { InvalidArgumentError, isAijobError, rpcAccess, type AijobError, type Logger } from '@aijob/core';
import { counter, histogram } from '@aijob/telemetry';
import { toStatus } from './grpc-status.js';
import { addReflection } from './reflection.js';

/** A request whose bytes did not decode (answered INVALID_ARGUMENT, before any access check). */
class Undecodable {
  constructor(readonly cause: unknown) {}
}

/** Per-RPC metrics as go-grpc-prometheus names them, which dashboards already use. */
const grpcMetrics = {
  handled: () => counter('grpc_server_handled_total', 'RPCs completed on the server, by status code.',
    ['grpc_type', 'grpc_service', 'grpc_method', 'grpc_code']),
  started: () => counter('grpc_server_started_total', 'RPCs started on the server.',
    ['grpc_type', 'grpc_service', 'grpc_method']),
  handling: () => histogram('grpc_server_handling_seconds', 'Time to handle an RPC, until the last response.',
    ['grpc_type', 'grpc_service', 'grpc_method']),
};

/** What a handler knows about the call it serves. */
export interface CallContext {
  /** `aijob.v1.JobService/SubmitJob` */
  readonly method: string;
  readonly metadata: grpc.Metadata;
  /** From `x-request-id` metadata, or generated. */
  readonly requestId: string;
  /** Aborted when the client cancels or the deadline passes. */
  readonly signal: AbortSignal;
  readonly log: Logger;
  readonly peer: string;
  /** Set by the server's `authorize` hook. */
  principal?: Principal;
  /** The principal's workspace policy, when the authenticator knows it. */
  policy?: WorkspacePolicy;
}

export type UnaryHandler<Req, Res> = (req: Req, ctx: CallContext) => Promise<Res>;
export type StreamHandler<Req, Res> = (req: Req, ctx: CallContext, send: (res: Res) => Promise<void>) => Promise<void>;

interface MethodDefinition {
  path: string;
  requestStream: boolean;
  responseStream: boolean;
  requestDeserialize: (b: Buffer) => unknown;
  responseSerialize: (v: never) => Buffer;
}
type Req<M> = M extends { requestDeserialize: (b: Buffer) => infer R } ? R : never;
type Res<M> = M extends { responseSerialize: (v: infer R) => Buffer } ? R : never;

/** Handlers for every method of a ts-proto service definition, typed from it. */
export type Implementation<D> = {
  [K in keyof D]: D[K] extends { responseStream: true } ? StreamHandler<Req<D[K]>, Res<D[K]>>
    : UnaryHandler<Req<D[K]>, Res<D[K]>>;
};

export interface GrpcServerOptions {
  log: Logger;
  /** Runs before every handler with the method's access rule; throws to refuse the call. */
  authorize?: (ctx: CallContext, access: string) => Promise<void>;
  /** Largest request accepted, bytes. Default 4 MiB. */
  maxMessageBytes?: number;
  /** Told of every domain error a handler throws (after the access check passed), e.g. to audit refusals. */
  onHandlerError?: (ctx: CallContext, err: AijobError) => void;
}

/**
 * The grpc.health.v1 service name that answers SERVING for as long as the server runs:
 * for liveness probes, which must not follow dependencies ('' and the service names
 * follow readiness).
 */
export const LIVENESS_SERVICE = 'liveness';

/**
 * A gRPC server with grpc.health.v1, server reflection, per-RPC metrics and logs, the
 * access check, and one error mapping (errors.ts → status) for every handler.
 */
export class GrpcServer {
  readonly server: grpc.Server;
  readonly health = new HealthImplementation({ '': 'NOT_SERVING', [LIVENESS_SERVICE]: 'SERVING' });
  private readonly serviceNames: string[] = [];
  private readonly metrics = { handled: grpcMetrics.handled(), started: grpcMetrics.started(), handling: grpcMetrics.handling() };

  constructor(private readonly opts: GrpcServerOptions) {
    const max = opts.maxMessageBytes ?? 4 * 1024 * 1024;
    this.server = new grpc.Server({
      'grpc.max_receive_message_length': max,
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.http2.min_ping_interval_without_data_ms': 5_000,
      'grpc.max_concurrent_streams': 10_000,
      // Room for oversized metadata to reach the access check (and be refused there).
      'grpc.max_metadata_size': 64 * 1024,
    });
    this.health.addToServer(this.server);
  }

  /** Registers a service; its handlers get the context, and errors are mapped for them. */
  add<D extends Record<string, MethodDefinition>>(definition: D, impl: Implementation<D>): this {
    const wrapped: grpc.UntypedServiceImplementation = {};
    // Bytes that do not decode become INVALID_ARGUMENT in the handler wrapper, not grpc-js' INTERNAL.
    const tolerant = Object.fromEntries(Object.entries(definition).map(([key, def]) => [key, {
      ...def,
      requestDeserialize: (b: Buffer) => {
        try { return def.requestDeserialize(b); } catch (err) { return new Undecodable(err); }
      },
    }]));
    for (const [key, def] of Object.entries(definition)) {
      const handler = (impl as Record<string, UnaryHandler<unknown, unknown> | StreamHandler<unknown, unknown>>)[key];
      if (!handler) throw new Error(`no handler for ${def.path}`);
      wrapped[key] = def.responseStream
        ? this.wrapStream(def, handler as StreamHandler<unknown, unknown>)
        : this.wrapUnary(def, handler as UnaryHandler<unknown, unknown>);
    }
    this.server.addService(tolerant as unknown as grpc.ServiceDefinition, wrapped);
    const first = Object.values(definition)[0];
    if (first) this.serviceNames.push(first.path.split('/')[1]!);
    return this;
  }

  /**
   * Registers a service whose handlers run the access check and map errors themselves
   * (bidirectional streams, which `add` does not wrap); it is listed in health and reflection.
   */
  addUnwrapped(definition: grpc.ServiceDefinition, impl: grpc.UntypedServiceImplementation): this {
    this.server.addService(definition, impl);
    const first = Object.values(definition)[0];
    if (first) this.serviceNames.push(first.path.split('/')[1]!);
    return this;
  }

  /** Binds and starts serving; resolves the bound port (useful with port 0). */
  async listen(host: string, port: number): Promise<number> {
    addReflection(this.server, [...this.serviceNames, 'grpc.health.v1.Health']);
    return new Promise((resolve, reject) => {
      this.server.bindAsync(`${host}:${port}`, grpc.ServerCredentials.createInsecure(), (err, bound) =>
        err ? reject(err) : resolve(bound));
    });
  }

  /** Health follows readiness: SERVING only while the service can do its work. */
  setServing(serving: boolean): void {
    const s = serving ? 'SERVING' : 'NOT_SERVING';
    this.health.setStatus('', s);
    for (const name of this.serviceNames) this.health.setStatus(name, s);
  }

  /** Stops accepting calls, lets running ones finish within `graceMs`, then cuts the rest. */
  async shutdown(graceMs: number): Promise<void> {
    this.setServing(false);
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => { this.server.forceShutdown(); resolve(); }, graceMs);
      this.server.tryShutdown(() => { clearTimeout(timer); resolve(); });
    });
  }

  private context(path: string, call: grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>, abort: AbortController): CallContext {
    const method = path.slice(1);
    const given = call.metadata.get('x-request-id')[0];
    const requestId = typeof given === 'string' && /^[\w.:-]{1,128}$/.test(given) ? given : randomUUID();
    return {
      method,
      metadata: call.metadata,
      requestId,
      signal: abort.signal,
      log: this.opts.log.child({ request_id: requestId, rpc: method }),
      peer: call.getPeer(),
    };
  }

  private async admit(ctx: CallContext, request?: unknown): Promise<void> {
    if (request instanceof Undecodable) throw InvalidArgumentError.field('(request)', 'is not a valid protobuf message of this method');
    const access = rpcAccess[ctx.method];
    if (!access) throw new Error(`no access rule for ${ctx.method}`);
    if (this.opts.authorize) await this.opts.authorize(ctx, access);
  }

  /** Reports a handler's domain errors to `onHandlerError`, then passes them on. */
  private async guard<T>(ctx: CallContext, p: Promise<T>): Promise<T> {
    try {
      return await p;
    } catch (err) {
      if (this.opts.onHandlerError && isAijobError(err)) {
        try { this.opts.onHandlerError(ctx, err); } catch { /* auditing must not change the answer */ }
      }
      throw err;
    }
  }

  private labels(path: string, type: string) {
    const [, service = '', method = ''] = path.split('/');
    return { grpc_type: type, grpc_service: service, grpc_method: method };
  }

  private finish(ctx: CallContext, labels: ReturnType<GrpcServer['labels']>, end: () => number, err: unknown) {
    const st = err === undefined ? { code: grpc.status.OK } : toStatus(err);
    this.metrics.handled.inc({ ...labels, grpc_code: grpc.status[st.code] });
    end();
    if (err !== undefined && st.code === grpc.status.INTERNAL) {
      ctx.log.error({ err }, 'unhandled error in handler');
    } else if (err !== undefined && st.code === grpc.status.UNAVAILABLE && !isAijobError(err)) {
      ctx.log.warn({ err: (err as Error).message }, 'dependency unavailable');
    } else if (err !== undefined) {
      ctx.log.debug({ code: grpc.status[st.code], reason: (err as Error).message }, 'call refused');
    }
    return st;
  }

  private wrapUnary(def: MethodDefinition, handler: UnaryHandler<unknown, unknown>): grpc.handleUnaryCall<unknown, unknown> {
    const labels = this.labels(def.path, 'unary');
    return (call, callback) => {
      this.metrics.started.inc(labels);
      const end = this.metrics.handling.startTimer(labels);
      const abort = new AbortController();
      call.once('cancelled', () => abort.abort(new Error('call cancelled')));
      const ctx = this.context(def.path, call, abort);
      this.admit(ctx, call.request)
        .then(() => this.guard(ctx, handler(call.request, ctx)))
        .then(
          (res) => { this.finish(ctx, labels, end, undefined); callback(null, res); },
          (err: unknown) => callback(this.finish(ctx, labels, end, err)),
        );
    };
  }

  private wrapStream(def: MethodDefinition, handler: StreamHandler<unknown, unknown>): grpc.handleServerStreamingCall<unknown, unknown> {
    const labels = this.labels(def.path, 'server_stream');
    return (call) => {
      this.metrics.started.inc(labels);
      const end = this.metrics.handling.startTimer(labels);
      const abort = new AbortController();
      call.once('cancelled', () => abort.abort(new Error('call cancelled')));
      const ctx = this.context(def.path, call, abort);
      const send = (res: unknown) => new Promise<void>((resolve, reject) => {
        if (abort.signal.aborted) return reject(abort.signal.reason);
        if (call.write(res)) return resolve();
        const onDrain = () => { abort.signal.removeEventListener('abort', onAbort); resolve(); };
        const onAbort = () => { call.off('drain', onDrain); reject(abort.signal.reason); };
        call.once('drain', onDrain);
        abort.signal.addEventListener('abort', onAbort, { once: true });
      });
      this.admit(ctx, call.request)
        .then(() => this.guard(ctx, handler(call.request, ctx, send)))
        .then(
          () => { this.finish(ctx, labels, end, undefined); call.end(); },
          (err: unknown) => {
            const st = this.finish(ctx, labels, end, err);
            if (!abort.signal.aborted) call.emit('error', st);
          },
        );
    };
  }
}
