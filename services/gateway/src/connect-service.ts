import { randomBytes, randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { ConnectRequest, msToDuration, WorkerGatewayServiceService, type ConnectResponse } from '@aijob/contracts';
import { hasScope, InvalidArgumentError, PermissionDeniedError, UnavailableError, type Logger } from '@aijob/core';
import { bearerCredential, toStatus, type Identity } from '@aijob/server';
import { counter, histogram } from '@aijob/telemetry';
import type { DispatchHub } from './dispatch-hub.js';
import { parseHello } from './validation.js';
import { WorkerSession } from './worker-session.js';

const METHOD = 'aijob.v1.WorkerGatewayService/Connect';
const SCOPE = 'workers:run';

/** A message whose bytes did not decode: the session ends INVALID_ARGUMENT (not grpc-js' INTERNAL). */
class Undecodable {}

/** aijob.v1.WorkerGatewayService with a tolerant decoder, for `GrpcServer.addUnwrapped`. */
export function tolerant(service: typeof WorkerGatewayServiceService): grpc.ServiceDefinition {
  const def = service.connect;
  return {
    connect: {
      ...def,
      requestDeserialize: (b: Buffer) => {
        try {
          return ConnectRequest.decode(b);
        } catch {
          return new Undecodable();
        }
      },
    },
  } as unknown as grpc.ServiceDefinition;
}

export interface ConnectDeps {
  hub: DispatchHub;
  authenticate: (credential: string) => Promise<Identity>;
  gatewayId: string;
  heartbeatIntervalMs: number;
  maxSessions: number;
  /** False while draining: new sessions are refused UNAVAILABLE. */
  accepting: () => boolean;
  log: Logger;
}

/**
 * The Connect handler: authenticates the credential (scope workers:run), reads the
 * hello, opens a session with the hub, then feeds it the worker's messages until either
 * side ends the stream. Errors end the stream with their mapped status (one mapping,
 * toStatus); whatever ends it, the session's attempts are handed back.
 */
export function connectHandler(d: ConnectDeps): grpc.UntypedServiceImplementation {
  const labels = { grpc_type: 'bidi_stream', grpc_service: 'aijob.v1.WorkerGatewayService', grpc_method: 'Connect' };
  // The per-RPC metrics every server keeps (the GrpcServer's, shared by name).
  const metrics = {
    handled: counter('grpc_server_handled_total', 'RPCs completed on the server, by status code.', [
      'grpc_type',
      'grpc_service',
      'grpc_method',
      'grpc_code',
    ]),
    started: counter('grpc_server_started_total', 'RPCs started on the server.', [
      'grpc_type',
      'grpc_service',
      'grpc_method',
    ]),
    handling: histogram('grpc_server_handling_seconds', 'Time to handle an RPC, until the last response.', [
      'grpc_type',
      'grpc_service',
      'grpc_method',
    ]),
  };
  let sessionNo = 0;
  const prefix = randomBytes(3).toString('hex');

  const connect = (call: grpc.ServerDuplexStream<ConnectRequest | Undecodable, ConnectResponse>) => {
    metrics.started.inc(labels);
    const stopTimer = metrics.handling.startTimer(labels);
    const given = call.metadata.get('x-request-id')[0];
    const requestId = typeof given === 'string' && /^[\w.:-]{1,128}$/.test(given) ? given : randomUUID();
    let log = d.log.child({ request_id: requestId, rpc: METHOD });
    let session: WorkerSession | undefined;
    let finished = false;
    const finish = (err?: unknown) => {
      if (finished) return;
      finished = true;
      const st = err === undefined ? { code: grpc.status.OK, details: '' } : toStatus(err);
      metrics.handled.inc({ ...labels, grpc_code: grpc.status[st.code] });
      stopTimer();
      if (session) void d.hub.close(session);
      if (st.code === grpc.status.INTERNAL) log.error({ err }, 'unhandled error in worker session');
      else if (err !== undefined)
        log.info({ code: grpc.status[st.code], reason: (err as Error).message }, 'worker session ended');
      if (call.cancelled) return;
      if (err === undefined) call.end();
      else call.emit('error', st);
    };
    call.on('cancelled', () => finish(new UnavailableError('the worker went away')));
    call.on('error', () => finish(new UnavailableError('the worker stream broke')));
    const write = (msg: ConnectResponse) => {
      if (!finished && !call.cancelled) call.write(msg);
    };

    const run = async () => {
      if (!d.accepting()) throw new UnavailableError('the gateway is shutting down; connect again');
      if (d.hub.sessions.size >= d.maxSessions)
        throw new UnavailableError('the gateway has as many workers as it takes; connect to another');
      const credential = bearerCredential(call.metadata);
      const check = async () => {
        const id = await d.authenticate(credential);
        if (!hasScope(id.principal.scopes, SCOPE)) throw new PermissionDeniedError(`Connect needs scope ${SCOPE}`);
        return id;
      };
      const identity = await check();
      // Not call[Symbol.asyncIterator](): it destroys the stream once the worker half-closes,
      // before the status could be sent.
      const messages = (
        call as unknown as { iterator(o: { destroyOnReturn: boolean }): AsyncIterator<ConnectRequest | Undecodable> }
      ).iterator({ destroyOnReturn: false });
      const first = await messages.next();
      if (first.done) return;
      if (first.value instanceof Undecodable)
        throw InvalidArgumentError.field('(message)', 'is not a valid ConnectRequest');
      const spec = parseHello(first.value.hello);
      const workerId = `${spec.name}@${d.gatewayId}.${prefix}${(++sessionNo).toString(36)}`.slice(0, 128);
      log = log.child({ worker_id: workerId });
      session = new WorkerSession(
        workerId,
        spec,
        write,
        (err) => finish(err),
        async () => {
          await check();
        },
      );
      log.info(
        {
          queues: spec.queues,
          types: spec.jobTypes,
          slots: spec.slots,
          version: spec.version,
          workspace_id: identity.principal.workspaceId,
          subject: identity.principal.subject,
        },
        'worker connected',
      );
      write({ welcome: { workerId, heartbeatInterval: msToDuration(d.heartbeatIntervalMs) } });
      await d.hub.heartbeat(session).catch(() => undefined);
      d.hub.open(session);
      for (;;) {
        const next = await messages.next();
        if (next.done || finished) break;
        const m = next.value;
        if (m instanceof Undecodable) throw InvalidArgumentError.field('(message)', 'is not a valid ConnectRequest');
        session.lastSeen = Date.now();
        if (m.result) {
          const r = m.result;
          track(d.hub.result(session, r).then((resultAck) => write({ resultAck })));
        } else if (m.handBack) {
          const { jobId, attempt } = m.handBack;
          track(
            d.hub.handBack(session, jobId, attempt).then(
              (resultAck) => write({ resultAck }),
              (err: unknown) =>
                write({
                  resultAck: { jobId, attempt, accepted: false, reason: `not handed back: ${(err as Error).message}` },
                }),
            ),
          );
        } else if (m.progress) {
          d.hub.progress(session, m.progress);
        } else if (m.drain) {
          d.hub.drain(session);
          await d.hub.heartbeat(session).catch(() => undefined);
        } else if (m.hello) {
          throw InvalidArgumentError.field('hello', 'comes once, as the first message');
        }
      }
      // The worker closed its side: its last reports are answered before the stream ends.
      log.debug({ pending: pending.size }, 'worker closed its side');
      await Promise.all(pending);
    };
    const pending = new Set<Promise<void>>();
    const track = (p: Promise<void>) => {
      pending.add(p);
      void p.finally(() => pending.delete(p));
    };
    run().then(() => finish(), finish);
  };
  return { connect } as unknown as grpc.UntypedServiceImplementation;
}
