import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ownChild, repoRoot } from './processes.js';

/** Debian's Python, with python3-grpcio and python3-protobuf (see .ci/run); AIJOB_PYTHON overrides. */
export const PYTHON = process.env['AIJOB_PYTHON'] ?? '/usr/bin/python3';
export const PYTHON_SDK = join(repoRoot, 'sdks/python');

/** Why the Python tests cannot run here, or undefined when they can. */
export function pythonMissing(): string | undefined {
  if (!existsSync(PYTHON)) return `${PYTHON} not found (set AIJOB_PYTHON)`;
  if (!existsSync(join(PYTHON_SDK, 'src/aijob/v1/worker_gateway_service_pb2.py'))) {
    return 'the Python stubs are not generated: install protoc and grpc_python_plugin, then npm run proto:python';
  }
  return undefined;
}

/** A Python process, its stdout JSON lines and its whole output kept for assertions. */
export class PythonProcess {
  readonly lines: Record<string, unknown>[] = [];
  output = '';
  readonly child: ChildProcess;
  readonly exited: Promise<number | null>;

  constructor(script: string, env: Record<string, string>) {
    this.child = ownChild(
      spawn(PYTHON, ['-u', join(PYTHON_SDK, script)], {
        cwd: repoRoot,
        env: { PATH: process.env['PATH'] ?? '', ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    );
    this.exited = new Promise((resolve) => this.child.once('exit', (code) => resolve(code)));
    let partial = '';
    this.child.stdout!.on('data', (chunk: Buffer) => {
      this.output += chunk.toString();
      const text = partial + chunk.toString();
      const parts = text.split('\n');
      partial = parts.pop() ?? '';
      for (const line of parts) {
        try {
          this.lines.push(JSON.parse(line) as Record<string, unknown>);
        } catch {
          /* not a JSON line */
        }
      }
    });
    this.child.stderr!.on('data', (chunk: Buffer) => {
      this.output += chunk.toString();
    });
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** kill -9. */
  async kill(): Promise<void> {
    if (!this.running) return;
    this.child.kill('SIGKILL');
    await this.exited;
  }
}
