import t from 'tap';
import { JobState } from '@aijob/sdk';
import { HealthCheckClientShim } from '../helpers/health.js';
import { PrivateNats } from '../helpers/nats-server.js';
import { OtlpReceiver } from '../helpers/otlp-receiver.js';
import { startPlatform, waitFor } from '../helpers/platform.js';

/** Sum of a metric's samples (all label sets) in a Prometheus text exposition. */
function total(text: string, name: string, match = ''): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})? ([\d.e+-]+|NaN)$/.exec(line);
    if (m && m[1] === name && (m[2] ?? '').includes(match)) sum += Number(m[3]);
  }
  return sum;
}

t.test('metrics count every job exactly, and one trace follows each job through all four services', async (t) => {
  const otlp = await new OtlpReceiver().start();
  t.teardown(() => otlp.stop());
  const p = await startPlatform(t, {
    workers: 1,
    env: { OTEL_EXPORTER_OTLP_ENDPOINT: otlp.endpoint, OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json', OTEL_BSP_SCHEDULE_DELAY: '100' },
  });
  const c = p.client();
  const before = { submitted: total(await p.metrics('job-0'), 'aijob_submitted_total') };
  const N = 12;
  // Seven single submits, three in one SubmitJobs call, two that fail.
  const jobs = [
    ...await Promise.all(Array.from({ length: 7 }, (_, i) => c.submit({ type: 'echo', input: { i } }))),
    ...await c.submitMany([7, 8, 9].map((i) => ({ type: 'echo', input: { i } }))),
    ...await Promise.all([0, 1].map(() => c.submit({ type: 'fail', input: { code: 'NOPE' } }))),
  ];
  const done = await waitFor(async () => {
    const js = await Promise.all(jobs.map((j) => c.get(j.id)));
    return js.every((j) => j.state === JobState.JOB_STATE_SUCCEEDED || j.state === JobState.JOB_STATE_FAILED) ? js : undefined;
  }, 30_000, 'all jobs to finish');

  const job = await p.metrics('job-0');
  const worker = await p.metrics('worker-0');
  const scheduler = await p.metrics('scheduler-0');
  t.equal(total(job, 'aijob_submitted_total') - before.submitted, N, 'aijob_submitted_total grew by exactly N');
  t.equal(total(job, 'aijob_completed_total', 'status="succeeded"'), 10);
  t.equal(total(job, 'aijob_completed_total', 'status="failed"'), 2);
  t.equal(total(job, 'aijob_execution_duration_seconds_count'), N, 'execution histogram has N observations');
  t.equal(total(worker, 'aijob_dispatch_latency_seconds_count'), N, 'dispatch latency observed N times');
  t.equal(total(worker, 'worker_jobs_processed_total'), N);
  t.equal(total(worker, 'worker_job_duration_seconds_count'), N);
  t.equal(total(scheduler, 'aijob_admitted_total'), N);
  t.equal(total(scheduler, 'controller_leader_election_master'), 1);
  // The leader reconciles every second here; the jobs took longer than that.
  t.ok(total(scheduler, 'controller_reconcile_total') >= 1, 'reconcile passes counted');
  t.equal(total(scheduler, 'controller_reconcile_errors_total'), 0, 'none failed');
  t.match(scheduler, /^controller_workqueue_depth \d+$/m, 'work queue depth exported');
  t.match(scheduler, /aijob_queue_depth/, 'queue depth exported');
  t.equal(total(job, 'grpc_server_handled_total', 'grpc_method="SubmitJob",grpc_code="OK"'), N - 3, 'per-RPC counts');
  t.equal(total(job, 'grpc_server_handled_total', 'grpc_method="SubmitJobs",grpc_code="OK"'), 1);
  t.ok(total(job, 'grpc_server_handling_seconds_count', 'grpc_method="SubmitJob"') >= N - 3);
  t.match(job, /process_resident_memory_bytes/, 'process metrics');
  t.notMatch(worker, /worker_gpu_utilization\{/, 'no GPU, no utilisation series');

  for (const j of done) t.match(j.traceId, /^[0-9a-f]{32}$/, 'GetJob returns the trace id');
  t.equal(new Set(done.map((j) => j.traceId)).size, N, 'a trace of its own for every job, batched ones too');
  await waitFor(() => done.every((j) => otlp.trace(j.traceId).some((s) => s.name.startsWith('aijob.transition'))),
    20_000, 'spans to arrive');
  for (const j of done) {
    const spans = otlp.trace(j.traceId);
    const services = new Set(spans.map((s) => s.service));
    for (const s of ['aijob-job', 'aijob-scheduler', 'aijob-worker']) t.ok(services.has(s), `${j.id}: spans from ${s}`);
    const submit = spans.find((s) => s.service === 'aijob-job' && (s.name.endsWith('SubmitJob') || s.name === 'aijob.submit'));
    const admit = spans.find((s) => s.name === 'aijob.admit');
    const exec = spans.find((s) => s.name.startsWith('aijob.execute'));
    const ends = spans.filter((s) => s.name.startsWith('aijob.transition') && s.attributes['aijob.state'] !== 'RUNNING');
    t.ok(submit && admit && exec && ends.length === 1, 'submit, admit, execute and the final transition');
    t.equal(admit?.parentSpanId, submit?.spanId, 'admission is a child of the submit call (across NATS)');
    t.equal(exec?.parentSpanId, admit?.spanId, 'execution is a child of admission (across NATS)');
    t.equal(ends[0]?.parentSpanId, exec?.spanId, 'the transition is a child of execution (across NATS)');
  }
  const withAuth = done.filter((j) => otlp.trace(j.traceId).some((s) => s.service === 'aijob-auth'));
  t.ok(withAuth.length >= 1, 'the first call, which reached the auth service, has its spans in the same trace');

  const failed = done.find((j) => j.state === JobState.JOB_STATE_FAILED)!;
  const line = p.proc('worker-0').lines.find((l) => l['job_id'] === failed.id && l['msg'] === 'attempt failed');
  t.equal(line?.['trace_id'], failed.traceId, 'log lines carry the job\'s trace id');
  for (const proc of p.procs) {
    t.notMatch(proc.raw.join('\n'), new RegExp(p.apiKey), `${proc.name} never logs the API key`);
  }

  // Dispatch latency counts from when a job could start: a job delayed by run_at is not late.
  const underOne = async () => total(await p.metrics('worker-0'), 'aijob_dispatch_latency_seconds_bucket', 'le="1"');
  const before1 = await underOne();
  const delayed = await c.submitAndWait({ type: 'echo', runAt: new Date(Date.now() + 2_500) }, { timeoutMs: 20_000 });
  t.ok(delayed.startedAt!.getTime() - delayed.createdAt!.getTime() >= 2_000, 'the delayed job started after its run_at');
  t.equal(await underOne() - before1, 1, 'and its dispatch latency, from run_at, is under a second');
});

t.test('readiness follows NATS: false while it is down, true again after it restarts', async (t) => {
  const nats = await new PrivateNats().start();
  t.teardown(() => nats.remove());
  const p = await startPlatform(t, { workers: 0, env: { NATS_URL: nats.url } });
  const ready = async (svc: string) => (await fetch(`http://127.0.0.1:${p.ops[svc]}/readyz`)).status;
  t.equal(await ready('job-0'), 200);
  const health = new HealthCheckClientShim(p.jobAddr);
  t.teardown(() => health.close());
  await nats.stop();
  await waitFor(async () => (await ready('job-0')) === 503, 10_000, 'job not ready');
  await waitFor(async () => (await ready('scheduler-0')) === 503, 10_000, 'scheduler not ready');
  const body = await (await fetch(`http://127.0.0.1:${p.ops['job-0']}/readyz`)).json() as { checks: Record<string, string> };
  t.not(body.checks['nats'], 'ok', `names the failing dependency (${body.checks['nats']})`);
  t.equal(body.checks['postgres'], 'ok');
  await waitFor(() => health.check('').then((s) => s === 'NOT_SERVING'), 10_000, 'gRPC health NOT_SERVING');
  t.equal(await (await fetch(`http://127.0.0.1:${p.ops['job-0']}/healthz`)).status, 200, 'still alive');
  await nats.start();
  await waitFor(async () => (await ready('job-0')) === 200, 20_000, 'job ready again');
  await waitFor(() => health.check('').then((s) => s === 'SERVING'), 10_000, 'gRPC health SERVING again');
  const job = await p.client().submit({ type: 'echo' });
  t.equal(job.state, JobState.JOB_STATE_QUEUED, 'and it takes jobs again');
});
