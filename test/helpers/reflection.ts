import { createRequire } from 'node:module';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import protobuf from 'protobufjs';

const require = createRequire(import.meta.url);
// protobufjs' descriptor extension: FileDescriptorProto codecs and Root.fromDescriptor.
const descriptor = require('protobufjs/ext/descriptor') as {
  FileDescriptorProto: protobuf.Type;
  FileDescriptorSet: protobuf.Type;
};

interface ReflectionResponse {
  list_services_response?: { service: { name: string }[] };
  file_descriptor_response?: { file_descriptor_proto: Buffer[] };
  error_response?: { error_code: number; error_message: string };
}

type ReflectionStub = grpc.Client & {
  ServerReflectionInfo(): grpc.ClientDuplexStream<Record<string, unknown>, ReflectionResponse>;
};

/**
 * What grpcurl does with no proto files: asks a server's reflection service for its
 * services and descriptors, and builds message types from them alone.
 */
export class ReflectionClient {
  private readonly stub: ReflectionStub;

  constructor(address: string) {
    const path = require.resolve('@grpc/reflection/build/proto/grpc/reflection/v1/reflection.proto');
    const def = loadSync(path, { keepCase: true, longs: String, defaults: false, oneofs: true });
    const pkg = grpc.loadPackageDefinition(def) as unknown as {
      grpc: { reflection: { v1: { ServerReflection: new (a: string, c: grpc.ChannelCredentials) => ReflectionStub } } };
    };
    this.stub = new pkg.grpc.reflection.v1.ServerReflection(address, grpc.credentials.createInsecure());
  }

  private ask(req: Record<string, unknown>): Promise<ReflectionResponse> {
    return new Promise((resolve, reject) => {
      const call = this.stub.ServerReflectionInfo();
      call.on('data', (res: ReflectionResponse) => { resolve(res); call.end(); });
      call.on('error', reject);
      call.write(req);
    });
  }

  async listServices(): Promise<string[]> {
    const res = await this.ask({ list_services: '*' });
    return res.list_services_response!.service.map((s) => s.name).sort();
  }

  /** Every file descriptor needed for `symbol`, its imports followed recursively. */
  async filesFor(symbol: string): Promise<protobuf.Message[]> {
    const byName = new Map<string, protobuf.Message & { name?: string; dependency?: string[] }>();
    const add = (res: ReflectionResponse) => {
      if (res.error_response) throw new Error(res.error_response.error_message);
      for (const bytes of res.file_descriptor_response!.file_descriptor_proto) {
        const fd = descriptor.FileDescriptorProto.decode(bytes) as protobuf.Message & { name: string; dependency?: string[] };
        byName.set(fd.name, fd);
      }
    };
    add(await this.ask({ file_containing_symbol: symbol }));
    for (let again = true; again;) {
      again = false;
      for (const fd of [...byName.values()]) {
        for (const dep of fd.dependency ?? []) {
          if (!byName.has(dep)) { add(await this.ask({ file_by_filename: dep })); again = true; }
        }
      }
    }
    return [...byName.values()];
  }

  /** A protobufjs Root built only from the server's descriptors. */
  async rootFor(symbol: string): Promise<protobuf.Root> {
    const files = await this.filesFor(symbol);
    const set = descriptor.FileDescriptorSet.fromObject({ file: files.map((f) => descriptor.FileDescriptorProto.toObject(f)) });
    return (protobuf.Root as unknown as { fromDescriptor(s: unknown): protobuf.Root }).fromDescriptor(set);
  }

  close(): void {
    this.stub.close();
  }
}

/** Calls a unary method using only reflected types (what `grpcurl -d ... host Service/Method` does). */
export function invokeDynamic(address: string, root: protobuf.Root, method: string, body: Record<string, unknown>,
  metadata: grpc.Metadata): Promise<Record<string, unknown>> {
  const [serviceName, methodName] = method.split('/') as [string, string];
  const service = root.lookupService(serviceName);
  const m = service.methods[methodName]!;
  const reqType = root.lookupType(m.requestType);
  const resType = root.lookupType(m.responseType);
  const Client = grpc.makeGenericClientConstructor({
    [methodName]: {
      path: `/${serviceName}/${methodName}`, requestStream: false, responseStream: false,
      requestSerialize: (v: Record<string, unknown>) => Buffer.from(reqType.encode(reqType.fromObject(v)).finish()),
      requestDeserialize: (b: Buffer) => reqType.decode(b),
      responseSerialize: () => Buffer.alloc(0),
      responseDeserialize: (b: Buffer) => resType.toObject(resType.decode(b), { enums: String, defaults: false }),
    },
  }, serviceName);
  const client = new Client(address, grpc.credentials.createInsecure()) as unknown as Record<string, (...args: unknown[]) => unknown> & grpc.Client;
  return new Promise((resolve, reject) => {
    client[methodName]!(body, metadata, (err: grpc.ServiceError | null, res: Record<string, unknown>) => {
      client.close();
      if (err) reject(err); else resolve(res);
    });
  });
}
