import { execFile } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from './processes.js';
import type { Platform } from './platform.js';

export interface CliRun { code: number; stdout: string; stderr: string }

/** Runs `aijob …` as a subprocess against a platform (its addresses and admin key in the environment). */
export function cli(p: Platform, args: string[], env: Record<string, string> = {}): Promise<CliRun> {
  return cliStarted(p, args, env).done;
}

/** `aijob …` started in the background: its output so far, and its end. */
export function cliStarted(p: Platform, args: string[], env: Record<string, string> = {}): { stdout: () => string; done: Promise<CliRun> } {
  let out = '';
  const done = new Promise<CliRun>((resolve) => {
    const child = execFile(process.execPath, [join(repoRoot, 'libs/cli/bin/aijob.mjs'), ...args], {
      env: {
        PATH: process.env['PATH'] ?? '', HOME: tmpdir(), AIJOB_ADDR: p.jobAddr, AIJOB_SCHEDULER_ADDR: p.schedulerAddr,
        AIJOB_AUTH_ADDR: p.authAddr, AIJOB_API_KEY: p.apiKey, ...env,
      },
    }, (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }));
    child.stdout!.on('data', (chunk: Buffer) => { out += chunk.toString(); });
  });
  return { stdout: () => out, done };
}
