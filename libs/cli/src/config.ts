import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { UsageError } from './errors.js';

export interface Connection {
  addr: string;
  schedulerAddr: string;
  authAddr: string;
  apiKey?: string;
  token?: string;
  tls: boolean;
}

interface FileConfig { addr?: string; schedulerAddr?: string; authAddr?: string; apiKey?: string; token?: string; tls?: boolean }

/** Where the config file is: --config, AIJOB_CONFIG, or ~/.config/aijob/config.json. */
export function configPath(flag: string | undefined, env: NodeJS.ProcessEnv): string {
  return flag ?? env['AIJOB_CONFIG'] ?? join(env['XDG_CONFIG_HOME'] ?? join(homedir(), '.config'), 'aijob', 'config.json');
}

/**
 * The connection settings: flags win over environment (AIJOB_ADDR, AIJOB_API_KEY,
 * AIJOB_TOKEN, AIJOB_SCHEDULER_ADDR, AIJOB_AUTH_ADDR), which win over the config file.
 * With the job service on its default port 50052, the scheduler and auth services are
 * looked for on 50053 and 50051 of the same host; any other address is taken for a
 * gateway that routes every service.
 */
export function connection(flags: Record<string, unknown>, env: NodeJS.ProcessEnv): Connection {
  const path = configPath(flags['config'] as string | undefined, env);
  let file: FileConfig = {};
  if (existsSync(path)) {
    try {
      file = JSON.parse(readFileSync(path, 'utf8')) as FileConfig;
    } catch (err) {
      throw new UsageError(`config file ${path} is not valid JSON: ${(err as Error).message}`);
    }
  } else if (flags['config']) {
    throw new UsageError(`config file ${path} not found`);
  }
  const pick = (flag: string, envName: string, fileValue: string | undefined) =>
    (flags[flag] as string | undefined) ?? (env[envName] || undefined) ?? fileValue;
  const addr = pick('addr', 'AIJOB_ADDR', file.addr) ?? 'localhost:50052';
  const sibling = (port: number) => (/:50052$/.test(addr) ? addr.replace(/:50052$/, `:${port}`) : addr);
  return {
    addr,
    schedulerAddr: pick('scheduler-addr', 'AIJOB_SCHEDULER_ADDR', file.schedulerAddr) ?? sibling(50053),
    authAddr: pick('auth-addr', 'AIJOB_AUTH_ADDR', file.authAddr) ?? sibling(50051),
    apiKey: pick('api-key', 'AIJOB_API_KEY', file.apiKey),
    token: pick('token', 'AIJOB_TOKEN', file.token),
    tls: flags['tls'] === true || env['AIJOB_TLS'] === 'true' || file.tls === true,
  };
}
