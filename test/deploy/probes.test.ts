// The probes the manifests declare are answered the way they assume: on a GrpcServer,
// the liveness name is SERVING from the start and stays so while readiness changes,
// while '' (the readiness probe) follows setServing; the worker's HTTP probes exist.
import t from 'tap';
import { createLogger } from '@aijob/core';
import { GrpcServer, LIVENESS_SERVICE, Readiness, startOpsServer } from '@aijob/server';
import { HealthCheckClientShim } from '../helpers/health.js';
import { build, ofKind, type K8s } from './manifest-files.js';

const base = build('deploy/k8s/base');
const containerOf = (d: K8s): K8s => d['spec']['template']['spec']['containers'][0];

t.test('gRPC health: liveness stays SERVING while readiness turns on and off', async (t) => {
  const server = new GrpcServer({ log: createLogger('probe-test', 'silent') });
  const port = await server.listen('127.0.0.1', 0);
  const health = new HealthCheckClientShim(`127.0.0.1:${port}`);
  t.teardown(async () => { health.close(); await server.shutdown(100); });

  t.equal(await health.check(LIVENESS_SERVICE), 'SERVING', 'alive before the dependencies are checked');
  t.equal(await health.check(''), 'NOT_SERVING', 'not ready yet');
  server.setServing(true);
  t.equal(await health.check(''), 'SERVING', 'ready');
  server.setServing(false);
  t.equal(await health.check(''), 'NOT_SERVING', 'a dependency went away: not ready...');
  t.equal(await health.check(LIVENESS_SERVICE), 'SERVING', '...but still alive, so not restarted');
  await t.rejects(health.check('no.such.Service'), 'an unknown name is NOT_FOUND, so a typo in a probe would fail');
});

t.test('every gRPC probe in the manifests names a service the health server answers', async (t) => {
  const names = new Set(['', LIVENESS_SERVICE]);
  let probes = 0;
  for (const d of ofKind(base, 'Deployment')) {
    const c = containerOf(d);
    for (const kind of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
      const grpc = c[kind]?.['grpc'];
      if (!grpc) continue;
      probes++;
      t.ok(names.has(grpc['service'] ?? ''), `${d['metadata']['name']} ${kind}: service "${grpc['service'] ?? ''}"`);
      t.equal(kind === 'readinessProbe', (grpc['service'] ?? '') === '', `${d['metadata']['name']} ${kind}: ${kind === 'readinessProbe' ? 'follows readiness' : 'liveness only'}`);
    }
  }
  t.equal(probes, 12, 'four gRPC services, three probes each');
});

t.test('HTTP probes: /healthz answers while /readyz fails (the worker\'s probes)', async (t) => {
  let up = false;
  const readiness = new Readiness({ nats: async () => { if (!up) throw new Error('nats down'); } });
  const ops = await startOpsServer({ host: '127.0.0.1', port: 0, readiness });
  t.teardown(() => ops.close());
  const status = async (path: string) => (await fetch(`http://127.0.0.1:${ops.port}${path}`)).status;
  t.equal(await status('/healthz'), 200);
  t.equal(await status('/readyz'), 503);
  up = true;
  await new Promise((r) => setTimeout(r, 600));
  t.equal(await status('/readyz'), 200);
});
