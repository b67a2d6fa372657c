import { delay } from '@aijob/core';

/** Time as the limiter sees it; tests pass a fake one. */
export interface Clock {
  now(): number;
  /** Resolves after `ms`, rejects with the signal's reason when it aborts. */
  sleep(ms: number, signal: AbortSignal): Promise<void>;
}
export const realClock: Clock = { now: Date.now, sleep: delay };

/** Thrown when a call would have to wait past its deadline; `waitMs` is how long it would have waited. */
export class LimitWaitTooLong extends Error {
  constructor(readonly waitMs: number) {
    super(`the limit frees up in ${waitMs} ms, after the deadline`);
    this.name = 'LimitWaitTooLong';
  }
}

const WINDOW_MS = 60_000;

/**
 * Requests- and tokens-per-minute limits of one provider, held per worker process (a
 * sliding window over the last minute; N workers may together send N times the limit,
 * so configure each with its share). A call waits, abortably, until it fits rather than
 * failing; tokens are reserved by estimate and corrected with the actual usage.
 */
export class MinuteLimiter {
  private calls: { at: number; tokens: number }[] = [];

  constructor(private readonly rpm: number, private readonly tpm: number, private readonly clock: Clock = realClock) {}

  /**
   * Waits until a call of `tokens` fits and reserves it; returns a handle to correct
   * its tokens once known. Throws LimitWaitTooLong rather than wait past `deadline`.
   */
  async acquire(tokens: number, signal: AbortSignal, deadline = Infinity): Promise<{ settle: (actual: number) => void }> {
    for (;;) {
      const wait = this.waitMs(tokens);
      if (wait <= 0) break;
      if (this.clock.now() + wait >= deadline) throw new LimitWaitTooLong(wait);
      // Re-check after waking: calls that woke first may have taken the room.
      await this.clock.sleep(wait, signal);
    }
    const entry = { at: this.clock.now(), tokens };
    this.calls.push(entry);
    return { settle: (actual) => { entry.tokens = actual; } };
  }

  /** How long until a call of `tokens` fits (0: now). */
  waitMs(tokens: number): number {
    const now = this.clock.now();
    this.calls = this.calls.filter((c) => now - c.at < WINDOW_MS);
    let wait = 0;
    if (this.rpm > 0 && this.calls.length >= this.rpm) {
      wait = Math.max(wait, this.calls[this.calls.length - this.rpm]!.at + WINDOW_MS - now);
    }
    if (this.tpm > 0) {
      // Drop the oldest calls until this one fits. A call larger than the whole budget
      // waits for an empty window, then goes: refusing it forever would help no one.
      let used = this.calls.reduce((n, c) => n + c.tokens, 0);
      for (let i = 0; i < this.calls.length && used + tokens > this.tpm && used > 0; i++) {
        used -= this.calls[i]!.tokens;
        wait = Math.max(wait, this.calls[i]!.at + WINDOW_MS - now);
      }
    }
    return Math.max(0, wait);
  }
}
