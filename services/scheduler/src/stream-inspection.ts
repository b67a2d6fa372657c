import { DispatchedJob } from '@aijob/contracts';
import type { Bus, Topology } from '@aijob/bus';

/**
 * Every message in the dispatch stream, as `<job id>:<attempt>`. Work-queue retention
 * keeps exactly the messages not yet acked, so this is bounded by the workers' capacity.
 */
export async function dispatchMessages(bus: Bus, t: Topology): Promise<Set<string>> {
  const out = new Set<string>();
  let seq = 1;
  for (let i = 0; i < 200_000; i++) {
    // next_by_subj (server 2.9+) skips the gaps acked messages leave; the typings lack it.
    const req = { seq, next_by_subj: t.subjects.allDispatch } as unknown as { seq: number };
    const m = await bus.jsm.streams.getMessage(t.streams.dispatch, req).catch(() => null);
    if (!m) break;
    try {
      const job = DispatchedJob.decode(m.data);
      out.add(`${job.jobId}:${job.attempt}`);
    } catch {
      // not ours to judge
    }
    seq = m.seq + 1;
  }
  return out;
}

/** Each stream's creation time ("missing" when absent): a recreated stream has lost its data. */
export async function streamIdentities(bus: Bus, t: Topology): Promise<Map<string, string>> {
  const ids = new Map<string, string>();
  for (const name of Object.values(t.streams)) {
    const info = await bus.jsm.streams.info(name).catch(() => undefined);
    ids.set(name, info ? info.created : 'missing');
  }
  return ids;
}
