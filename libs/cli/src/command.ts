import type { AijobClient } from '@aijob/sdk';
import type { Out } from './output.js';

export interface OptionSpec {
  type: 'string' | 'boolean';
  description: string;
  multiple?: boolean;
  short?: string;
}

/** One `aijob <group> <name>` command. */
export interface Command {
  name: string;
  summary: string;
  /** e.g. "<type> [--input JSON]" */
  usage: string;
  options?: Record<string, OptionSpec>;
  run(ctx: CommandContext): Promise<number | void>;
}

export interface CommandContext {
  client: AijobClient;
  out: Out;
  args: string[];
  flags: Record<string, string | boolean | string[] | undefined>;
}

export interface Group {
  name: string;
  summary: string;
  commands: Command[];
}

/** The flag's string value, or undefined. */
export function str(ctx: CommandContext, name: string): string | undefined {
  const v = ctx.flags[name];
  return typeof v === 'string' ? v : undefined;
}

export function bool(ctx: CommandContext, name: string): boolean {
  return ctx.flags[name] === true;
}

export function list(ctx: CommandContext, name: string): string[] {
  const v = ctx.flags[name];
  if (Array.isArray(v)) return v.flatMap((x) => x.split(',')).map((x) => x.trim()).filter(Boolean);
  return typeof v === 'string' ? v.split(',').map((x) => x.trim()).filter(Boolean) : [];
}
