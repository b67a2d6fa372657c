import type { JobStateName } from '../schema/enums.js';
import { attemptsDoc, type Queryable } from './job-row.js';

/** Who wrote a history row: applied worker events, the job service, the scheduler. */
export type HistorySource = 'worker' | 'job' | 'scheduler';

/**
 * One statement appending the same transition to many jobs' history (job_events),
 * each row at the job's attempt, with one detail document for all.
 */
export async function appendHistory(
  q: Queryable,
  rows: readonly { id: string; attempt: number }[],
  state: JobStateName,
  source: HistorySource,
  detail: Record<string, unknown>,
): Promise<void> {
  await q`INSERT INTO job_events (job_id, attempt, state, source, detail)
    SELECT id, attempt, ${state}::text, ${source}::text, ${JSON.stringify(detail)}::text::jsonb
    FROM json_to_recordset(${attemptsDoc(rows)}::text::json) AS r(id uuid, attempt int)`;
}
