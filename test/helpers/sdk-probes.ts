import * as grpc from '@grpc/grpc-js';
import { createServer, type Server, type Socket } from 'node:net';

/** One call the SDK made, as a client interceptor saw it: the method and the status it ended with. */
export interface SeenCall {
  method: string;
  code?: grpc.status;
}

/** A client interceptor that records every call (and attempt) the SDK starts. */
export function callRecorder(): { calls: SeenCall[]; interceptor: grpc.Interceptor; count(method: string, code?: grpc.status): number } {
  const calls: SeenCall[] = [];
  const interceptor: grpc.Interceptor = (options, next) => {
    const seen: SeenCall = { method: options.method_definition.path.split('/').pop()! };
    calls.push(seen);
    return new grpc.InterceptingCall(next(options), {
      start(metadata, _listener, nextStart) {
        nextStart(metadata, {
          onReceiveStatus(status, nextStatus) {
            seen.code = status.code;
            nextStatus(status);
          },
        });
      },
    });
  };
  const count = (method: string, code?: grpc.status) =>
    calls.filter((c) => c.method === method && (code === undefined || c.code === code)).length;
  return { calls, interceptor, count };
}

/** A TCP server that accepts connections and never answers: calls to it wait for their deadline. */
export async function blackHole(t: { teardown: (fn: () => Promise<void> | void) => void }): Promise<string> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((s) => { sockets.add(s); s.on('error', () => undefined); });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
  });
  return `127.0.0.1:${(server.address() as { port: number }).port}`;
}

/** How long `p` takes to settle, and how: `{ ms, error }` (error undefined when it resolved). */
export async function timed<T>(p: Promise<T>): Promise<{ ms: number; value?: T; error?: unknown }> {
  const started = Date.now();
  try {
    const value = await p;
    return { ms: Date.now() - started, value };
  } catch (error) {
    return { ms: Date.now() - started, error };
  }
}
