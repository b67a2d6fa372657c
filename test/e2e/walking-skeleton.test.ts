import t from 'tap';
import { JobState, stateName, InvalidArgumentError, UnauthenticatedError, AijobClient } from '@aijob/sdk';
import { startPlatform, waitFor } from '../helpers/platform.js';

t.test('an echo job goes from submit to SUCCEEDED through four real services', async (t) => {
  const p = await startPlatform(t);
  const client = p.client();
  const input = { x: 1, nested: { list: [1, 'two', true, null] }, text: 'héllo' };
  // run_at in the near future so the watch starts while the job is still QUEUED.
  const job = await client.submit({ type: 'echo', queue: 'default', input, runAt: new Date(Date.now() + 1_000) });
  t.equal(job.state, JobState.JOB_STATE_QUEUED);
  t.match(job.id, /^[0-9a-f-]{36}$/);

  const seen: string[] = [];
  for await (const j of client.watch(job.id)) seen.push(stateName(j.state));
  t.equal(seen[0], 'QUEUED', 'watch starts with the current state');
  t.equal(seen[seen.length - 1], 'SUCCEEDED', 'watch ends with the terminal state');
  t.ok(seen.indexOf('QUEUED') < seen.indexOf('SUCCEEDED'));

  const done = await client.get(job.id);
  t.same(done.output, input, 'output equals input');
  t.equal(done.attempt, 1);
  t.ok(done.startedAt && done.finishedAt, 'start and finish are recorded');

  const sql = p.sql();
  const history = await sql`SELECT state FROM job_events WHERE job_id = ${job.id} ORDER BY id`;
  t.same(history.map((r) => r['state']), ['DISPATCHED', 'RUNNING', 'SUCCEEDED'], 'history of transitions');
  const audit = await sql`SELECT action, outcome, actor FROM audit_log WHERE resource = ${`job/${job.id}`}`;
  t.same(audit.map((r) => [r['action'], r['outcome'], r['actor']]), [['job.submit', 'allowed', 'key_bootstrap']]);
});

// One platform without workers for the refusals below (started by the first that needs it).
let bare: ReturnType<typeof startPlatform> | undefined;
const withoutWorkers = () => (bare ??= startPlatform(t, { workers: 0, serviceEnv: { job: { MAX_INPUT_BYTES: '2048' } } }));

t.test('bad input is refused with the field at fault and leaves nothing behind', async (t) => {
  const p = await withoutWorkers();
  const client = p.client();
  const sql = p.sql();
  const cases: [string, Parameters<typeof client.submit>[0], string][] = [
    ['missing type', { type: '' }, 'type'],
    ['queue name with bad characters', { type: 'echo', queue: 'Bad Queue!' }, 'queue'],
    ['input over the limit', { type: 'echo', input: { blob: 'x'.repeat(4096) } }, 'input'],
    ['negative timeout', { type: 'echo', timeoutMs: -5 }, 'timeout'],
    ['priority out of range', { type: 'echo', priority: 5000 }, 'priority'],
  ];
  for (const [name, req, field] of cases) {
    const err = await client.submit(req).then(() => undefined, (e: unknown) => e);
    t.type(err, InvalidArgumentError, `${name}: INVALID_ARGUMENT`);
    t.ok((err as InvalidArgumentError).fieldViolations.some((v) => v.field === field), `${name}: names ${field}`);
  }
  const batchErr = await client.submitMany([{ type: 'echo' }, { type: 'echo', queue: 'UPPER' }]).then(() => undefined, (e: unknown) => e);
  t.same((batchErr as InvalidArgumentError).fieldViolations.map((v) => v.field), ['jobs[1].queue'], 'batch names the entry');

  const [{ n }] = await sql`SELECT count(*)::int AS n FROM jobs`;
  t.equal(n, 0, 'no job row');
  const audit = await waitFor(async () => {
    const rows = await sql`SELECT outcome, reason FROM audit_log ORDER BY id`;
    return rows.length === cases.length + 1 ? rows : undefined;
  }, 10_000, 'one audit row per refused submit');
  t.ok(audit.every((r) => r['outcome'] === 'failed'), 'refusals are audited as failed, nothing as allowed');
  const { connect } = await import('@nats-io/transport-node');
  const { jetstreamManager } = await import('@nats-io/jetstream');
  const nc = await connect({ servers: process.env['AIJOB_TEST_NATS'] ?? 'nats://127.0.0.1:4222' });
  const info = await (await jetstreamManager(nc)).streams.info(`${p.namespace.toUpperCase()}_JOBS`);
  t.equal(info.state.messages, 0, 'no message published');
  await nc.close();
});

t.test('calls without a valid key are UNAUTHENTICATED', async (t) => {
  const p = await withoutWorkers();
  const wrong = new AijobClient({ address: p.jobAddr, apiKey: 'aijob_nope_' + 'x'.repeat(30) });
  t.teardown(() => wrong.close());
  await t.rejects(wrong.submit({ type: 'echo' }), UnauthenticatedError, 'wrong key');
  await t.rejects(wrong.listPage({}), UnauthenticatedError, 'wrong key on reads too');

  const grpc = await import('@grpc/grpc-js');
  const { JobServiceClient, SubmitJobRequest } = await import('@aijob/contracts');
  const raw = new JobServiceClient(p.jobAddr, grpc.credentials.createInsecure());
  t.teardown(() => raw.close());
  const code = await new Promise<number>((resolve) =>
    raw.submitJob(SubmitJobRequest.fromPartial({ type: 'echo' }), (err) => resolve(err?.code ?? 0)));
  t.equal(code, grpc.status.UNAUTHENTICATED, 'no key');
  await waitFor(async () => (await p.sql()`SELECT count(*)::int AS n FROM jobs`)[0]!['n'] === 0, 1_000, 'no jobs');
});

t.test('a service stopped the moment it listens shuts down cleanly, every step in time', async (t) => {
  const p = await withoutWorkers();
  const extra = { job: {}, scheduler: { SCHEDULER_ID: `${p.id}-scheduler-early` }, worker: { WORKER_ID: `${p.id}-worker-early` }, auth: {} };
  for (const [service, env] of Object.entries(extra) as [keyof typeof extra, Record<string, string>][]) {
    const name = `${service}-early-stop`;
    await p.spawn(service, env, name);
    const proc = p.proc(name);
    t.equal(await proc.stop(), 0, `${service}: exit 0`);
    t.same(proc.lines.filter((l) => l['msg'] === 'shutdown step failed').map((l) => l['step']), [],
      `${service}: no shutdown step failed or timed out (a consumer still opening used to hold the job service 15 s)`);
    t.ok(proc.lines.some((l) => l['msg'] === 'stopped' || l['msg'] === 'worker stopped'), `${service}: ran its shutdown to the end`);
  }
});
