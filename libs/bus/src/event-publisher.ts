import type { JetStreamClient } from '@nats-io/jetstream';
import { nuid } from '@nats-io/transport-node';
import { JobEvents, JobState, jobStateToJSON, type JobEvent } from '@aijob/contracts';
import { Batcher, errorMessage, type Logger } from '@aijob/core';
import { counter } from '@aijob/telemetry';
import { encode } from './codec.js';
import type { Topology } from './topology.js';

/**
 * Publishes job events in batches: all events of one state that arrive together go out
 * as one JobEvents message on `<ns>.events.<state>`. `publish` resolves once JetStream
 * has stored the event; failed publishes are retried (same message id, so the stream
 * deduplicates) until they succeed or the publisher is closed.
 */
export class EventPublisher {
  private readonly batcher: Batcher<JobEvent, void>;
  private closed = false;
  private readonly published = counter('aijob_events_published_total', 'Job events handed to JetStream by this process.');

  constructor(private readonly js: JetStreamClient, private readonly t: Topology, private readonly log: Logger) {
    this.batcher = new Batcher((events) => this.flush(events), { maxBatch: 1000, concurrency: 4 });
  }

  publish(event: JobEvent): Promise<void> {
    return this.batcher.add(event);
  }

  /** Waits for everything handed over to be stored. */
  async close(): Promise<void> {
    await this.batcher.idle();
    this.closed = true;
  }

  private async flush(events: JobEvent[]): Promise<void[]> {
    // An attempt that started and ended within one flush needs only its end: the end
    // event carries started_at, so the RUNNING event would change nothing. Progress stays.
    const ended = new Set<string>();
    for (const e of events) if (e.state !== JobState.JOB_STATE_RUNNING && e.source === 'worker') ended.add(`${e.jobId}:${e.attempt}`);
    const byState = new Map<JobState, JobEvent[]>();
    for (const e of events) {
      if (e.state === JobState.JOB_STATE_RUNNING && !e.hasProgress && ended.has(`${e.jobId}:${e.attempt}`)) continue;
      const list = byState.get(e.state);
      if (list) list.push(e); else byState.set(e.state, [e]);
    }
    await Promise.all([...byState].map(([state, list]) => this.send(state, list)));
    this.published.inc(events.length);
    return events.map(() => undefined);
  }

  private async send(state: JobState, events: JobEvent[]): Promise<void> {
    const subject = this.t.subjects.event(jobStateToJSON(state).replace('JOB_STATE_', ''));
    const data = encode(JobEvents, { events });
    const msgID = nuid.next();
    for (let attempt = 1; ; attempt++) {
      try {
        await this.js.publish(subject, data, { msgID });
        return;
      } catch (err) {
        if (this.closed) throw err;
        this.log.warn({ err: errorMessage(err), subject, attempt }, 'event publish failed; retrying');
        await new Promise((r) => setTimeout(r, Math.min(5_000, 100 * 2 ** Math.min(attempt, 6))));
      }
    }
  }
}
