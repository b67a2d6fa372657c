import t from 'tap';
import { z } from 'zod';
import { ConfigError, loadConfig, servicePortVariables } from '@aijob/core';

const shape = {
  PORT: z.coerce.number().int().max(65535),
  INTERNAL_TOKEN: z.string().min(32),
  NATS_PASSWORD: z.string().min(12),
  MODE: z.enum(['a', 'b']).default('a'),
};

t.test('every bad variable is listed at once, and secrets are never echoed', async (t) => {
  let problems: string[] = [];
  try {
    loadConfig(shape, { PORT: '99999', INTERNAL_TOKEN: 'short-secret', NATS_PASSWORD: 'hunter2', MODE: 'c' });
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    problems = err.problems;
  }
  t.equal(problems.length, 4, problems.join('\n'));
  t.match(problems.find((p) => p.startsWith('PORT')), /got "99999"/, 'ordinary values are shown');
  t.match(problems.find((p) => p.startsWith('MODE')), /got "c"/);
  t.match(problems.find((p) => p.startsWith('INTERNAL_TOKEN')), /got 12 characters/, 'a secret only by its length');
  t.notMatch(problems.join('\n'), /short-secret|hunter2/, 'no secret in the message');
});

t.test('empty variables count as unset and take their defaults', async (t) => {
  const c = loadConfig({ MODE: shape.MODE }, { MODE: '' });
  t.equal(c.MODE, 'a');
});

t.test('a service\'s own port variables win over the shared ones, and errors name them', async (t) => {
  const ports = { GRPC_PORT: z.coerce.number().int().max(65535).default(50052), OPS_PORT: z.coerce.number().int().max(65535).default(8000) };
  const job = servicePortVariables('job');
  t.same(job, { GRPC_PORT: 'JOB_GRPC_PORT', OPS_PORT: 'JOB_OPS_PORT' });
  t.same(loadConfig(ports, {}, job), { GRPC_PORT: 50052, OPS_PORT: 8000 });
  t.same(loadConfig(ports, { GRPC_PORT: '1', OPS_PORT: '2' }, job), { GRPC_PORT: 1, OPS_PORT: 2 }, 'the shared ones still work');
  t.same(loadConfig(ports, { GRPC_PORT: '1', JOB_GRPC_PORT: '3', AUTH_OPS_PORT: '9' }, job), { GRPC_PORT: 3, OPS_PORT: 8000 },
    'JOB_GRPC_PORT wins; another service\'s variable is not read');
  t.throws(() => loadConfig(ports, { JOB_OPS_PORT: 'x' }, job), /JOB_OPS_PORT: .*\(got "x"\)/);
});
