import type { JsMsg } from '@nats-io/jetstream';
import type { ConnectResponse, DispatchedJob } from '@aijob/contracts';
import type { SessionSpec } from './validation.js';

/** An attempt the gateway handed to a session and holds the dispatch message of. */
export interface HeldAttempt {
  readonly job: DispatchedJob;
  readonly msg: JsMsg;
  readonly session: WorkerSession;
  readonly startedAt: Date;
  /** Set once an end (result, timeout, hand-back) is being stored: later ones are refused. */
  ending: boolean;
  /** The attempt span's, carried by its events. */
  traceparent: string;
  /** Ends the attempt's span. */
  finishSpan?: (outcome: string) => void;
  timeout?: NodeJS.Timeout;
  progressTimer?: NodeJS.Timeout;
  lastProgress?: { pct: number; note: string };
}

/**
 * One connected worker: what it serves, the attempts it holds, and how to talk to it.
 * Its free slots count the attempts in hand and those being fetched or confirmed for it.
 */
export class WorkerSession {
  readonly inHand = new Map<string, HeldAttempt>();
  /** Slots promised to pending fetches and confirmations. */
  reserved = 0;
  draining = false;
  closed = false;
  lastSeen = Date.now();
  /** Jobs this session handed back: never given to it again. */
  readonly handedBack = new Set<string>();
  private readonly types: Set<string>;

  constructor(
    readonly workerId: string,
    readonly spec: SessionSpec,
    /** Writes a message to the worker's stream. */
    readonly send: (msg: ConnectResponse) => void,
    /** Ends the session with an error (revoked credential, silence); hands its attempts back. */
    readonly end: (err: Error) => void,
    /** Re-checks the session's credential; throws when it no longer holds. */
    readonly recheck: () => Promise<void>,
  ) {
    this.types = new Set(spec.jobTypes);
  }

  get accepting(): boolean {
    return !this.closed && !this.draining;
  }

  get free(): number {
    return this.accepting ? Math.max(0, this.spec.slots - this.inHand.size - this.reserved) : 0;
  }

  rememberHandBack(jobId: string): void {
    if (this.handedBack.size >= 10_000) this.handedBack.delete(this.handedBack.values().next().value!);
    this.handedBack.add(jobId);
  }

  serves(queue: string): boolean {
    return this.spec.queues.includes(queue);
  }

  runs(type: string): boolean {
    return this.types.has(type);
  }
}
