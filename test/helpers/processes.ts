import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const repoRoot = fileURLToPath(new URL('../..', import.meta.url));

/**
 * Children of this test process (services, nats-server), killed when it ends however it
 * ends: a test file that times out is sent SIGTERM, and its platform must not outlive it.
 */
const children = new Set<ChildProcess>();
const cleanups = new Set<() => Promise<void>>();
const killChildren = () => { for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL'); };
process.once('exit', killChildren);
for (const sig of ['SIGTERM', 'SIGINT'] as const) {
  process.once(sig, () => {
    killChildren();
    // Then what the platforms made (databases, streams), within a few seconds.
    const deadline = new Promise((r) => setTimeout(r, 5_000).unref());
    void Promise.race([Promise.allSettled([...cleanups].map((f) => f())), deadline])
      .finally(() => process.exit(sig === 'SIGTERM' ? 143 : 130));
  });
}

/** Runs `fn` should this process be terminated before it runs it itself; returns the deregistration. */
export function onTerminate(fn: () => Promise<void>): () => void {
  cleanups.add(fn);
  return () => { cleanups.delete(fn); };
}

/** Kills `child` with this process, should it still run then. */
export function ownChild(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** A service started as a real process, its JSON log lines kept for assertions. */
export class ServiceProcess {
  readonly lines: Record<string, unknown>[] = [];
  readonly raw: string[] = [];
  private exited: Promise<number | null>;
  private waiters: { pred: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }[] = [];
  readonly child: ChildProcess;

  constructor(readonly name: string, script: string, env: Record<string, string>) {
    this.child = ownChild(spawn(process.execPath, [script], {
      cwd: repoRoot,
      env: { PATH: process.env['PATH'] ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    }));
    this.exited = new Promise((resolve) => this.child.once('exit', (code) => resolve(code)));
    const onData = (chunk: Buffer) => {
      for (const line of chunk.toString().split('\n')) {
        if (!line.trim()) continue;
        this.raw.push(line);
        if (process.env['AIJOB_TEST_LOGS']) process.stderr.write(`[${this.name}] ${line}\n`);
        try {
          const parsed = JSON.parse(line) as Record<string, unknown>;
          this.lines.push(parsed);
          for (const w of [...this.waiters]) {
            if (w.pred(parsed)) {
              this.waiters.splice(this.waiters.indexOf(w), 1);
              w.resolve(parsed);
            }
          }
        } catch {
          // not a JSON log line (e.g. the bootstrap key banner)
        }
      }
    };
    let partial = '';
    const split = (chunk: Buffer) => {
      const text = partial + chunk.toString();
      const cut = text.lastIndexOf('\n');
      if (cut < 0) { partial = text; return; }
      partial = text.slice(cut + 1);
      onData(Buffer.from(text.slice(0, cut)));
    };
    this.child.stdout!.on('data', split);
    this.child.stderr!.on('data', split);
  }

  /** Resolves with the first log line matching `pred` (already seen or future). */
  waitForLine(pred: (l: Record<string, unknown>) => boolean, timeoutMs = 30_000): Promise<Record<string, unknown>> {
    const seen = this.lines.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      // Whichever comes first ends the wait and clears the timer: a timer left running
      // after an early exit kept the test process alive for the rest of timeoutMs.
      const waiter = { pred, resolve: (l: Record<string, unknown>) => { clearTimeout(timer); resolve(l); } };
      const fail = (err: Error) => {
        clearTimeout(timer);
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(err);
      };
      const timer = setTimeout(() => fail(new Error(`${this.name}: no matching log line within ${timeoutMs} ms\n${this.raw.slice(-20).join('\n')}`)), timeoutMs);
      void this.exited.then((code) => fail(new Error(`${this.name} exited (${code}) before the expected log line\n${this.raw.slice(-30).join('\n')}`)));
      this.waiters.push(waiter);
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit code. */
  async stop(graceMs = 15_000): Promise<number | null> {
    if (!this.running) return this.child.exitCode;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    const code = await this.exited;
    clearTimeout(timer);
    return code;
  }

  /** kill -9. */
  async kill(): Promise<void> {
    if (!this.running) return;
    this.child.kill('SIGKILL');
    await this.exited;
  }

  exit(): Promise<number | null> {
    return this.exited;
  }
}

/** Polls `check` until it returns a truthy value or `timeoutMs` passes. */
export async function waitFor<T>(check: () => Promise<T> | T, timeoutMs = 20_000, what = 'condition', everyMs = 50): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? `: ${String(lastErr)}` : ''}`);
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
