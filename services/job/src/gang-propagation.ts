import type { JobStateName, Tx } from '@aijob/store';

export interface GangChange {
  id: string;
  old_state: JobStateName;
  state: JobStateName;
  attempt: number;
  queue: string;
  workspace_id: string;
  type: string;
  next_attempt_at: Date | null;
  started_at: Date | null;
  finished_at: Date | null;
  traceparent: string;
  gang_id: string | null;
  gang_size: number;
  created_by?: string;
}

/**
 * A gang lives and dies together: when one member's attempt fails, every other member
 * of that attempt follows it — back to RETRY_WAIT (even those that had succeeded, so the
 * gang reruns as a whole) or to FAILED with GANG_MEMBER_FAILED. Runs in the applier's
 * transaction; returns the siblings it changed.
 */
export async function propagateGangFailures(
  tx: Tx,
  failed: { id: string; gang_id: string | null; state: JobStateName; attempt: number; next_attempt_at: Date | null }[],
): Promise<GangChange[]> {
  const byGang = new Map<string, (typeof failed)[number]>();
  for (const f of failed) {
    if (f.gang_id && (f.state === 'RETRY_WAIT' || f.state === 'FAILED') && !byGang.has(f.gang_id)) byGang.set(f.gang_id, f);
  }
  if (byGang.size === 0) return [];
  const doc = [...byGang.values()].map((f) => ({
    gang_id: f.gang_id, member: f.id, attempt: f.attempt, state: f.state, next_attempt_at: f.next_attempt_at,
  }));
  const changed = await tx<GangChange[]>`
    WITH f AS (
      SELECT * FROM json_to_recordset(${JSON.stringify(doc)}::text::json)
        AS f(gang_id uuid, member uuid, attempt int, state text, next_attempt_at timestamptz)
    ), old AS (
      SELECT j.id, j.state, f.state AS to_state, f.next_attempt_at, f.member FROM jobs j JOIN f ON j.gang_id = f.gang_id
      WHERE j.id <> f.member AND j.attempt = f.attempt
        AND j.state IN ('DISPATCHED', 'RUNNING', 'SUCCEEDED', 'QUEUED')
        AND (f.state = 'RETRY_WAIT' OR j.state <> 'SUCCEEDED')
      FOR UPDATE OF j
    )
    UPDATE jobs j SET state = old.to_state, updated_at = now(),
      next_attempt_at = CASE WHEN old.to_state = 'RETRY_WAIT' THEN old.next_attempt_at ELSE NULL END,
      finished_at = CASE WHEN old.to_state = 'FAILED' THEN now() ELSE NULL END,
      error_code = 'GANG_MEMBER_FAILED', error_message = 'gang member ' || old.member || ' failed',
      error_retryable = old.to_state = 'RETRY_WAIT', output = CASE WHEN old.to_state = 'RETRY_WAIT' THEN NULL ELSE j.output END
    FROM old WHERE j.id = old.id
    RETURNING j.id, old.state AS old_state, j.state, j.attempt, j.queue, j.workspace_id, j.type, j.next_attempt_at,
      j.started_at, j.finished_at, j.traceparent, j.gang_id, j.gang_size`;
  if (changed.length > 0) {
    const hist = changed.map((c) => ({ id: c.id, attempt: c.attempt, state: c.state }));
    await tx`INSERT INTO job_events (job_id, attempt, state, source, detail)
      SELECT id, attempt, state, 'job', '{"error":{"code":"GANG_MEMBER_FAILED"}}'::jsonb
      FROM json_to_recordset(${JSON.stringify(hist)}::text::json) AS h(id uuid, attempt int, state text)`;
  }
  return changed;
}
