/**
 * Group commit: callers add items one at a time and get a promise each; items that
 * arrive while earlier batches are in flight are flushed together in the next one.
 * An idle batcher flushes on the next turn of the event loop, so batching costs no
 * latency when there is nothing to batch with.
 */
export class Batcher<T, R> {
  private pending: { item: T; resolve: (r: R) => void; reject: (e: unknown) => void }[] = [];
  private inFlight = 0;
  private scheduled = false;

  constructor(
    /** Handles a batch; returns one result per item, in order. */
    private readonly flush: (items: T[]) => Promise<R[]>,
    private readonly opts: { maxBatch: number; concurrency?: number },
  ) {}

  add(item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.pending.push({ item, resolve, reject });
      this.schedule();
    });
  }

  /** Items waiting for a batch. */
  get backlog(): number {
    return this.pending.length;
  }

  /** Resolves when nothing is pending or in flight. */
  async idle(): Promise<void> {
    while (this.pending.length > 0 || this.inFlight > 0) await new Promise((r) => setTimeout(r, 5));
  }

  private schedule(): void {
    if (this.scheduled || this.inFlight >= (this.opts.concurrency ?? 1)) return;
    this.scheduled = true;
    setImmediate(() => { this.scheduled = false; void this.run(); });
  }

  private async run(): Promise<void> {
    if (this.pending.length === 0 || this.inFlight >= (this.opts.concurrency ?? 1)) return;
    const batch = this.pending.splice(0, this.opts.maxBatch);
    this.inFlight++;
    try {
      const results = await this.flush(batch.map((b) => b.item));
      batch.forEach((b, i) => b.resolve(results[i] as R));
    } catch (err) {
      for (const b of batch) b.reject(err);
    } finally {
      this.inFlight--;
      if (this.pending.length > 0) this.schedule();
    }
  }
}
