import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { protoPath } from 'grpc-health-check';

type HealthStub = grpc.Client & {
  Check(req: { service: string }, cb: (err: grpc.ServiceError | null, res: { status: string }) => void): void;
};

/** grpc.health.v1.Health/Check, as Kubernetes probes and grpcurl call it. */
export class HealthCheckClientShim {
  private readonly stub: HealthStub;

  constructor(address: string) {
    const pkg = grpc.loadPackageDefinition(loadSync(protoPath, { enums: String })) as unknown as {
      grpc: { health: { v1: { Health: new (a: string, c: grpc.ChannelCredentials) => HealthStub } } };
    };
    this.stub = new pkg.grpc.health.v1.Health(address, grpc.credentials.createInsecure());
  }

  check(service: string): Promise<string> {
    return new Promise((resolve, reject) => this.stub.Check({ service }, (err, res) => (err ? reject(err) : resolve(res.status))));
  }

  close(): void {
    this.stub.close();
  }
}
