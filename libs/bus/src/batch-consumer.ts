import type { Consumer, JsMsg } from '@nats-io/jetstream';
import { errorMessage, type Logger } from '@aijob/core';

export interface BatchConsumerOptions {
  /** Largest batch handed to the handler. */
  maxBatch: number;
  /** Messages pulled ahead of processing. */
  pullAhead: number;
  /** Delay before a failed batch is redelivered. */
  retryDelayMs: number;
  log: Logger;
}

/**
 * Consumes a durable in micro-batches: whatever arrived while the previous batch was
 * being handled forms the next one, so an idle system answers at once and a busy one
 * amortises its database round trips. A batch is acked after its handler resolves and
 * nak'ed (redelivered later) when it throws. Returns a stop function that waits for
 * the batch in hand.
 */
export function consumeBatches(
  /** Opens the consumer; called again (after a pause) whenever consumption breaks off. */
  open: () => Promise<Consumer>,
  handler: (msgs: JsMsg[]) => Promise<void>,
  o: BatchConsumerOptions,
): { stop: () => Promise<void> } {
  let buffer: JsMsg[] = [];
  let working: Promise<void> | undefined;
  let stopped = false;
  let messages: Awaited<ReturnType<Consumer['consume']>> | undefined;

  const drain = async () => {
    while (buffer.length > 0) {
      const batch = buffer.length <= o.maxBatch ? buffer : buffer.slice(0, o.maxBatch);
      buffer = buffer.length <= o.maxBatch ? [] : buffer.slice(o.maxBatch);
      try {
        await handler(batch);
        for (const m of batch) m.ack();
      } catch (err) {
        o.log.error({ err: errorMessage(err), batch: batch.length }, 'batch failed; will be redelivered');
        for (const m of batch) m.nak(o.retryDelayMs);
      }
    }
  };
  const kick = () => {
    if (working) return;
    working = new Promise<void>((resolve) => setImmediate(resolve))
      .then(drain)
      .finally(() => { working = undefined; if (buffer.length > 0 && !stopped) kick(); });
  };

  const loop = async () => {
    while (!stopped) {
      try {
        const consumer = await open();
        // Missing stream or consumer ends the loop, so it is opened (recreated) again.
        messages = await consumer.consume({ max_messages: o.pullAhead, abort_on_missing_resource: true });
        // A stop that came while the consumer was being opened found nothing to close. Not
        // awaited: close() resolves only once the iteration below has seen the end.
        if (stopped) void messages.close().catch(() => undefined);
        for await (const m of messages) {
          buffer.push(m);
          kick();
        }
        if (!stopped) o.log.warn('consumer ended; reopening');
      } catch (err) {
        if (stopped) break;
        o.log.warn({ err: errorMessage(err) }, 'consumer interrupted; reopening');
      }
      if (!stopped) await new Promise((r) => setTimeout(r, 500));
    }
  };
  const running = loop();

  return {
    stop: async () => {
      stopped = true;
      await messages?.close().catch(() => undefined);
      await running;
      await working;
    },
  };
}
