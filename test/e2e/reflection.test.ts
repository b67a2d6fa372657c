import t from 'tap';
import * as grpc from '@grpc/grpc-js';
import { HealthCheckClientShim } from '../helpers/health.js';
import { JobState } from "@aijob/sdk";
import { invokeDynamic, ReflectionClient } from '../helpers/reflection.js';
import { startPlatform, waitFor } from '../helpers/platform.js';

t.test('every service answers reflection and health the way grpcurl uses them', async (t) => {
  const p = await startPlatform(t);
  const expected: Record<string, string[]> = {
    [p.authAddr]: ['aijob.v1.AuthService'],
    [p.jobAddr]: ['aijob.v1.JobService'],
    [p.schedulerAddr]: ['aijob.v1.QueueService', 'aijob.v1.WorkerService'],
  };
  for (const [addr, services] of Object.entries(expected)) {
    const r = new ReflectionClient(addr);
    t.teardown(() => r.close());
    const listed = await r.listServices();
    for (const s of [...services, 'grpc.health.v1.Health']) t.ok(listed.includes(s), `${addr} lists ${s}`);
    const health = new HealthCheckClientShim(addr);
    t.teardown(() => health.close());
    t.equal(await waitFor(() => health.check('').then((s) => s === 'SERVING' && s), 10_000, 'SERVING'), 'SERVING',
      `${addr} health is SERVING`);
  }

  const r = new ReflectionClient(p.jobAddr);
  const files = await r.filesFor('aijob.v1.SubmitJobRequest');
  const names = files.map((f) => (f as unknown as { name: string }).name);
  for (const wkt of ['google/protobuf/struct.proto', 'google/protobuf/duration.proto', 'google/protobuf/timestamp.proto']) {
    t.ok(names.includes(wkt), `descriptors include ${wkt}`);
  }

  // Describe, then invoke SubmitJob from the reflected descriptors alone.
  const root = await r.rootFor('aijob.v1.JobService');
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${p.apiKey}`);
  const res = await invokeDynamic(p.jobAddr, root, 'aijob.v1.JobService/SubmitJob', {
    // protobufjs builds map fields from descriptors as their wire form: repeated key/value entries.
    queue: 'default', type: 'echo', input: { fields: [{ key: 'x', value: { number_value: 1 } }] },
  }, md);
  const job = res['job'] as { id: string; state: string };
  t.equal(job.state, 'JOB_STATE_QUEUED', 'a job submitted with reflected types alone');
  const done = await waitFor(async () => {
    const j = await p.client().get(job.id);
    return j.state === JobState.JOB_STATE_SUCCEEDED ? j : undefined;
  }, 20_000, 'job to succeed');
  t.same(done.output, { x: 1 });
});
