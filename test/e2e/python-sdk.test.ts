import t from 'tap';
import * as grpc from '@grpc/grpc-js';
import { stateName } from '@aijob/sdk';
import { startPlatform, waitFor, type Platform } from '../helpers/platform.js';
import { HealthCheckClientShim } from '../helpers/health.js';
import { OtlpReceiver } from '../helpers/otlp-receiver.js';
import { PythonProcess, pythonMissing } from '../helpers/python.js';

// One platform with the worker gateway: the Python SDK's own tests (client, worker,
// protocol fencing) and a Python worker process next to a TypeScript worker.
const missing = pythonMissing();
if (missing)
  throw new Error(`the Python SDK tests need Python with grpcio and protobuf, and the generated stubs: ${missing}`);

let p: Platform;
let gateway: string;
const otlp = new OtlpReceiver();
t.before(async () => {
  await otlp.start();
  t.teardown(() => otlp.stop());
  p = await startPlatform(t, {
    env: {
      OTEL_EXPORTER_OTLP_ENDPOINT: otlp.endpoint,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      OTEL_BSP_SCHEDULE_DELAY: '100',
    },
    serviceEnv: { worker: { WORKER_CONCURRENCY: '2' } },
  });
  gateway = await p.startGateway();
});

const env = (extra: Record<string, string> = {}) => ({
  AIJOB_JOB_ADDR: p.jobAddr,
  AIJOB_GATEWAY_ADDR: gateway,
  AIJOB_API_KEY: p.apiKey,
  ...extra,
});

t.test('the Python SDK: clients, workers, cancellation, timeouts, hand-back, fencing and refusals', async (t) => {
  const { apiKey: readKey } = await p.client().admin.createApiKey({ scopes: ['jobs:read'], name: 'read only' });
  const py = new PythonProcess('tests/test_sdk.py', env({ AIJOB_READ_KEY: readKey }));
  const code = await py.exited;
  const ran = /Ran (\d+) tests?/.exec(py.output);
  t.equal(code, 0, `python tests pass\n${code === 0 ? '' : py.output}`);
  t.ok(ran && Number(ran[1]) >= 9, `all Python tests ran (${ran?.[0] ?? 'none'})`);
  t.match(py.output, /\nOK\n/, 'unittest reports OK');
  const usage = await p.sql()`SELECT u.provider, u.model, u.prompt_tokens::int, u.completion_tokens::int
    FROM usage u JOIN jobs j ON j.id = u.job_id WHERE j.type = 'py.echo' AND j.queue = 'py' ORDER BY u.job_id LIMIT 1`;
  t.same(
    [...usage],
    [{ provider: 'openai', model: 'gpt-4o-mini', prompt_tokens: 12, completion_tokens: 3 }],
    "a Python handler's usage is recorded",
  );

  // One trace follows a job through the gateway as through a NATS worker.
  const [row] = await p.sql()<{ traceparent: string }[]>`
    SELECT traceparent FROM jobs WHERE type = 'py.echo' AND state = 'SUCCEEDED' ORDER BY id LIMIT 1`;
  const traceId = row!.traceparent.split('-')[1]!;
  const succeeded = (s: { name: string; attributes: Record<string, unknown> }) =>
    s.name.startsWith('aijob.transition') && s.attributes['aijob.state'] === 'SUCCEEDED';
  await waitFor(() => otlp.trace(traceId).some(succeeded), 20_000, "the job's spans to arrive");
  const spans = otlp.trace(traceId);
  const admit = spans.find((s) => s.name === 'aijob.admit');
  const exec = spans.find((s) => s.name === 'aijob.execute py.echo');
  t.equal(exec?.service, 'aijob-gateway', "the attempt's span is the gateway's");
  t.equal(exec?.attributes['aijob.outcome'], 'succeeded');
  t.equal(exec?.parentSpanId, admit?.spanId, 'execution is a child of admission');
  t.equal(spans.find(succeeded)?.parentSpanId, exec?.spanId, 'the final transition is a child of execution');
});

t.test(
  'a Python and a TypeScript worker serve one queue; a Python worker killed mid-job: the job runs elsewhere, recorded once',
  async (t) => {
    const c = p.client();
    const worker = new PythonProcess('tests/worker_process.py', env({ AIJOB_SLOTS: '2' }));
    t.teardown(() => worker.kill());
    await waitFor(() => worker.lines.find((l) => l['connected']), 30_000, 'the Python worker to connect');
    const sql = p.sql();
    const tsWorker = `${p.id}-worker-0`;

    const shared = await c.submitMany(Array.from({ length: 16 }, () => ({ type: 'sleep', input: { ms: 300 } })));
    await waitFor(
      async () => {
        const [r] = await sql<
          { n: number }[]
        >`SELECT count(*)::int AS n FROM jobs WHERE id = ANY(${shared.map((j) => j.id)}) AND state = 'SUCCEEDED'`;
        return r!.n === shared.length;
      },
      60_000,
      'the shared jobs to succeed',
    );
    const by = await sql<{ worker_id: string; n: number }[]>`
    SELECT worker_id, count(*)::int AS n FROM jobs WHERE id = ANY(${shared.map((j) => j.id)}) GROUP BY worker_id`;
    t.ok(
      by.some((r) => r.worker_id === tsWorker),
      `the TypeScript worker ran some (${JSON.stringify(by)})`,
    );
    t.ok(
      by.some((r) => r.worker_id.startsWith('py-proc@')),
      'the Python worker ran some',
    );

    const long = await c.submitMany(Array.from({ length: 4 }, () => ({ type: 'sleep', input: { ms: 2_500 } })));
    const started = await waitFor(
      () => worker.lines.find((l) => long.some((j) => j.id === l['started'])),
      30_000,
      'the Python worker to start a long job',
    );
    const victim = started['started'] as string;
    await worker.kill();
    await waitFor(
      async () => {
        const [r] = await sql<
          { n: number }[]
        >`SELECT count(*)::int AS n FROM jobs WHERE id = ANY(${long.map((j) => j.id)}) AND state = 'SUCCEEDED'`;
        return r!.n === long.length;
      },
      60_000,
      'every long job to succeed',
    );
    const done = await c.get(victim);
    t.equal(stateName(done.state), 'SUCCEEDED');
    t.equal(done.workerId, tsWorker, "the killed worker's job was run by the TypeScript worker");
    t.equal(done.attempt, 1, 'handed back at the disconnect: the same attempt, none counted');
    t.same(done.output, { slept_ms: 2500 }, "the output is the TypeScript worker's");
    const ends = await sql<{ state: string; n: number }[]>`
    SELECT state, count(*)::int AS n FROM job_events WHERE job_id = ${victim} AND state IN ('SUCCEEDED', 'FAILED') GROUP BY state`;
    t.same(ends, [{ state: 'SUCCEEDED', n: 1 }], 'recorded once');
  },
);

t.test('a revoked worker key ends its session within seconds; the job it held runs on another worker', async (t) => {
  const c = p.client();
  const { apiKey, key } = await c.admin.createApiKey({ scopes: ['workers:run'], name: 'python worker' });
  const revoked = new PythonProcess(
    'tests/worker_process.py',
    env({ AIJOB_API_KEY: apiKey, AIJOB_QUEUE: 'revoke', AIJOB_SLOTS: '1' }),
  );
  t.teardown(() => revoked.kill());
  await waitFor(() => revoked.lines.find((l) => l['connected']), 30_000, 'the worker with its own key to connect');
  const job = await waitFor(
    () => c.submit({ type: 'sleep', queue: 'revoke', input: { ms: 600_000 } }).catch(() => undefined),
    10_000,
    'sleep on queue revoke',
  );
  await waitFor(() => revoked.lines.find((l) => l['started'] === job.id), 30_000, 'the job to start');
  const at = Date.now();
  await c.admin.revokeApiKey(key.id);
  const code = await revoked.exited;
  t.ok(Date.now() - at < 10_000, `the session ended ${Date.now() - at} ms after the revocation`);
  t.not(code, 0, 'the worker stops: its credential is gone');
  t.match(revoked.output, /UnauthenticatedError/, 'with UnauthenticatedError');
  const other = new PythonProcess('tests/worker_process.py', env({ AIJOB_QUEUE: 'revoke', AIJOB_SLOTS: '1' }));
  t.teardown(() => other.kill());
  await waitFor(
    () => other.lines.find((l) => l['started'] === job.id),
    30_000,
    'the handed-back job to start on the other worker',
  );
  const again = other.lines.find((l) => l['started'] === job.id)!;
  t.equal(again['attempt'], 1, 'the same attempt: handed back, none counted');
  await c.cancel(job.id);
});

t.test('the gateway answers bytes that are no ConnectRequest with INVALID_ARGUMENT and keeps serving', async (t) => {
  const client = new grpc.Client(gateway, grpc.credentials.createInsecure());
  t.teardown(() => client.close());
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${p.apiKey}`);
  const status = await new Promise<grpc.StatusObject>((resolve) => {
    const call = client.makeBidiStreamRequest(
      '/aijob.v1.WorkerGatewayService/Connect',
      (b: Buffer) => b,
      (b: Buffer) => b,
      md,
    );
    call.on('data', () => undefined);
    call.on('status', resolve);
    call.on('error', () => undefined);
    call.write(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]));
  });
  t.equal(status.code, grpc.status.INVALID_ARGUMENT, status.details);
  const health = new HealthCheckClientShim(gateway);
  t.teardown(() => health.close());
  t.equal(await health.check(''), 'SERVING', 'the gateway still serves');
});

t.test('a worker reconnects to a restarted gateway and gets the job the old one handed back', async (t) => {
  const c = p.client();
  const worker = new PythonProcess('tests/worker_process.py', env({ AIJOB_QUEUE: 'restart', AIJOB_SLOTS: '1' }));
  t.teardown(() => worker.kill());
  await waitFor(() => worker.lines.find((l) => l['connected']), 30_000, 'the worker to connect');
  const job = await waitFor(
    () => c.submit({ type: 'sleep', queue: 'restart', input: { ms: 600_000 } }).catch(() => undefined),
    10_000,
    'sleep on queue restart',
  );
  await waitFor(() => worker.lines.find((l) => l['started'] === job.id), 30_000, 'the job to start');
  const port = gateway.split(':')[1]!;
  await p.proc('gateway').stop();
  await p.spawn('gateway', { GATEWAY_ID: `${p.id}-gateway`, GRPC_PORT: port }, 'gateway-2');
  const starts = await waitFor(
    () => {
      const s = worker.lines.filter((l) => l['started'] === job.id);
      return s.length >= 2 ? s : undefined;
    },
    30_000,
    'the worker to run the job again through the new gateway',
  );
  t.same(
    starts.map((s) => s['attempt']),
    [1, 1],
    "handed back at the old gateway's shutdown: the same attempt",
  );
  t.ok(worker.running, 'the worker kept running across the restart');
  await c.cancel(job.id);
});
