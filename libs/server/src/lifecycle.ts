import type { Logger } from '@aijob/core';

export interface ShutdownStep {
  name: string;
  run: () => Promise<void> | void;
}

/**
 * Runs `steps` in order on SIGTERM or SIGINT (once), each bounded by `stepTimeoutMs`,
 * then exits 0; a second signal exits at once. Unexpected crashes are logged and exit 1.
 */
export function handleShutdown(log: Logger, steps: ShutdownStep[], stepTimeoutMs = 15_000): () => Promise<void> {
  let stopping: Promise<void> | undefined;
  const stop = (signal: string) => {
    if (stopping) {
      log.warn({ signal }, 'second signal, exiting now');
      process.exit(1);
    }
    log.info({ signal }, 'shutting down');
    stopping = (async () => {
      for (const step of steps) {
        const started = Date.now();
        try {
          await Promise.race([
            Promise.resolve(step.run()),
            new Promise((_, reject) => setTimeout(() => reject(new Error('timed out')), stepTimeoutMs).unref()),
          ]);
          log.debug({ step: step.name, ms: Date.now() - started }, 'shutdown step done');
        } catch (err) {
          log.error({ step: step.name, err }, 'shutdown step failed');
        }
      }
      log.info('stopped');
    })();
    return stopping;
  };
  process.once('SIGTERM', () => void stop('SIGTERM').then(() => process.exit(0)));
  process.once('SIGINT', () => void stop('SIGINT').then(() => process.exit(0)));
  process.on('uncaughtException', (err) => {
    log.fatal({ err }, 'uncaught exception');
    process.exit(1);
  });
  process.on('unhandledRejection', (err) => {
    log.fatal({ err }, 'unhandled rejection');
    process.exit(1);
  });
  return () => stop('programmatic');
}
