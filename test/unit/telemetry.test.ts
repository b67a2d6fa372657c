// Tracing bootstrap as a real process sees it: the OTEL_* settings it honours (sampler,
// propagators, off switch), the gRPC server patched, and a bad setting refused by name.
import t from 'tap';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot } from '../helpers/processes.js';

interface Probe { valid: boolean; sampled: boolean; headers: string[]; grpcServerPatched: boolean }

function probe(env: Record<string, string>): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [join(repoRoot, 'test/fixtures/telemetry-probe.mjs')], { env: { PATH: process.env['PATH'] ?? '', ...env } },
      (e, out, err) => resolve({ code: e ? (typeof e.code === 'number' ? e.code : 1) : 0, out, err }));
  });
}
const run = async (env: Record<string, string>) => {
  const r = await probe(env);
  if (r.code !== 0) throw new Error(`probe exited ${r.code}: ${r.err}`);
  return JSON.parse(r.out) as Probe;
};

t.test('defaults: every root span sampled, W3C trace context and baggage, gRPC servers patched', async (t) => {
  t.same(await run({}), { valid: true, sampled: true, headers: ['traceparent'], grpcServerPatched: true });
});

t.test('OTEL_TRACES_SAMPLER and _ARG choose the sampler', async (t) => {
  t.equal((await run({ OTEL_TRACES_SAMPLER: 'always_off' })).sampled, false, 'always_off');
  t.equal((await run({ OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0' })).sampled, false, 'ratio 0');
  t.equal((await run({ OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '1' })).sampled, true, 'ratio 1');
});

t.test('OTEL_PROPAGATORS=none writes no headers; OTEL_SDK_DISABLED=true makes no spans and patches nothing', async (t) => {
  t.same((await run({ OTEL_PROPAGATORS: 'none' })).headers, []);
  t.same(await run({ OTEL_SDK_DISABLED: 'true' }), { valid: false, sampled: false, headers: [], grpcServerPatched: false });
});

t.test('a bad setting stops the process with the variable named', async (t) => {
  const r = await probe({ OTEL_TRACES_SAMPLER: 'sometimes' });
  t.not(r.code, 0);
  t.match(r.err, /OTEL_TRACES_SAMPLER/);
});
