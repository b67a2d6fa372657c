import { parseArgs } from 'node:util';
import { AijobClient } from '@aijob/sdk';
import type { Command, Group, OptionSpec } from './command.js';
import { dlqGroup } from './commands/dlq.js';
import { jobsGroup } from './commands/jobs.js';
import { auditGroup, keysGroup, usageGroup, workspacesGroup } from './commands/admin.js';
import { queueGroup } from './commands/queues.js';
import { connection } from './config.js';
import { describe, exitCodes, UsageError } from './errors.js';
import { stdio, type Format } from './output.js';

const groups: Group[] = [jobsGroup, dlqGroup, queueGroup, usageGroup, keysGroup, workspacesGroup, auditGroup];

const globalOptions: Record<string, OptionSpec> = {
  addr: { type: 'string', description: 'job service host:port (AIJOB_ADDR; default localhost:50052)' },
  'scheduler-addr': { type: 'string', description: 'scheduler host:port (AIJOB_SCHEDULER_ADDR)' },
  'auth-addr': { type: 'string', description: 'auth service host:port (AIJOB_AUTH_ADDR)' },
  'api-key': { type: 'string', description: 'API key (AIJOB_API_KEY)' },
  token: { type: 'string', description: 'a JWT instead of a key (AIJOB_TOKEN)' },
  config: { type: 'string', description: 'config file (AIJOB_CONFIG; default ~/.config/aijob/config.json)' },
  tls: { type: 'boolean', description: 'use TLS (AIJOB_TLS=true)' },
  json: { type: 'boolean', description: 'print JSON, for scripts' },
  format: { type: 'string', description: 'table, json or csv' },
  help: { type: 'boolean', short: 'h', description: 'show help' },
};

function options(o: Record<string, OptionSpec>) {
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, {
    type: v.type, ...(v.multiple ? { multiple: true } : {}), ...(v.short ? { short: v.short } : {}),
  }]));
}

function optionHelp(o: Record<string, OptionSpec>): string {
  return Object.entries(o).map(([k, v]) => `  --${k}${v.type === 'string' ? ' <value>' : ''}`.padEnd(30) + v.description).join('\n');
}

function help(group?: Group, command?: Command): string {
  if (group && command) {
    return `aijob ${group.name} ${command.name} ${command.usage}\n\n${command.summary}\n` +
      (command.options ? `\nOptions:\n${optionHelp(command.options)}\n` : '') + `\nGlobal options:\n${optionHelp(globalOptions)}\n`;
  }
  if (group) {
    return `aijob ${group.name} <command>: ${group.summary}\n\n` +
      group.commands.map((c) => `  ${c.name.padEnd(10)} ${c.summary}`).join('\n') + `\n\nRun aijob ${group.name} <command> --help for its options.\n`;
  }
  return `aijob: run and operate AI jobs\n\nUsage: aijob <group> <command> [arguments] [options]\n\n` +
    groups.map((g) => `  ${g.name.padEnd(11)} ${g.summary}`).join('\n') +
    `\n\nGlobal options:\n${optionHelp(globalOptions)}\n\n` +
    `Exit codes: 0 ok, 1 error, 2 usage or invalid argument, 3 not found, 4 unauthenticated or denied,\n` +
    `5 resource exhausted, 6 unavailable, 7 failed precondition, 8 the job did not succeed.\n`;
}

/**
 * The group and command named on the command line, wherever the options stand: a
 * string option's value (`--addr h:1 jobs list`) is not taken for a name.
 */
function commandOf(argv: string[]): { groupName?: string; commandName?: string; group?: Group; command?: Command } {
  const names: string[] = [];
  let group: Group | undefined;
  let command: Command | undefined;
  for (let i = 0; i < argv.length && names.length < 2; i++) {
    const a = argv[i]!;
    if (a === '--') { names.push(...argv.slice(i + 1, i + 3 - names.length)); break; }
    if (a.startsWith('--')) {
      const spec = ({ ...globalOptions, ...command?.options } as Record<string, OptionSpec | undefined>)[a.slice(2)];
      if (spec?.type === 'string') i++;
      continue;
    }
    if (a.startsWith('-') && a.length > 1) continue;
    names.push(a);
    if (names.length === 1) group = groups.find((g) => g.name === a);
    else command = group?.commands.find((c) => c.name === a);
  }
  return { groupName: names[0], commandName: names[1], group, command: names.length >= 2 ? command : undefined };
}

/** Runs one command line; resolves with the exit code. */
export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const { groupName, commandName, group, command } = commandOf(argv);
  const wantsHelp = argv.includes('--help') || argv.includes('-h');
  if (!group || !command) {
    if (wantsHelp || argv.length === 0) { stdio.write(help(group)); return exitCodes.ok; }
    stdio.error(`${groupName && !group ? `unknown group "${groupName}"` : `unknown command "${commandName ?? ''}"`}\n\n${help(group)}`);
    return exitCodes.usage;
  }
  if (wantsHelp) { stdio.write(help(group, command)); return exitCodes.ok; }

  let client: AijobClient | undefined;
  try {
    let parsed;
    try {
      parsed = parseArgs({ args: argv, options: options({ ...globalOptions, ...command.options }), allowPositionals: true, strict: true });
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
    const flags = parsed.values as Record<string, string | boolean | string[] | undefined>;
    const format = (flags['json'] ? 'json' : (flags['format'] as string | undefined) ?? 'table') as Format;
    if (!['table', 'json', 'csv'].includes(format)) throw new UsageError(`--format: "${format}" (table, json or csv)`);
    const conn = connection(flags, env);
    if (!conn.apiKey && !conn.token) throw new UsageError('no credential: set AIJOB_API_KEY, pass --api-key, or put apiKey in the config file');
    client = new AijobClient({
      address: conn.addr, queueAddress: conn.schedulerAddr, authAddress: conn.authAddr, tls: conn.tls,
      ...(conn.token ? { token: conn.token } : { apiKey: conn.apiKey }), exchangeTokens: false,
    });
    const code = await command.run({ client, out: { ...stdio, format }, args: parsed.positionals.slice(2), flags });
    return code ?? exitCodes.ok;
  } catch (err) {
    const { code, message } = describe(err);
    stdio.error(`aijob: ${message}\n`);
    return code;
  } finally {
    client?.close();
  }
}

export { exitCodes } from './errors.js';
