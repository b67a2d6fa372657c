import type { ApiKey, Workspace } from '@aijob/sdk';
import { bool, list, str, type Group } from '../command.js';
import { UsageError } from '../errors.js';
import { print, table } from '../output.js';
import { duration, integer, number, required, time } from '../parse.js';
import type { UsageDimension } from '@aijob/sdk';

const keyColumns = ['id', 'name', 'scopes', 'workspace', 'created', 'expires', 'revoked', 'last_used'];
const keyRow = (k: ApiKey) => ({
  id: k.id, name: k.name, scopes: k.scopes.join(','), workspace: k.workspaceId, created: k.createdAt,
  expires: k.expiresAt, revoked: k.revokedAt, last_used: k.lastUsedAt,
});
const wsColumns = ['id', 'name', 'rate_per_min', 'max_pending', 'job_types', 'budget_usd', 'created'];
const wsRow = (w: Workspace) => ({
  id: w.id, name: w.name, rate_per_min: w.policy?.rateLimitPerMinute || 'unlimited', max_pending: w.policy?.maxPending || '-',
  job_types: w.policy?.allowedJobTypes.join(',') || '(default)', budget_usd: w.policy?.monthlyBudgetUsd || '-', created: w.createdAt,
});
const policyOptions = {
  'rate-limit': { type: 'string' as const, description: 'requests per minute (0: unlimited)' },
  'max-pending': { type: 'string' as const, description: 'most unfinished jobs (0: no workspace limit)' },
  'allowed-types': { type: 'string' as const, description: 'job types, comma-separated ("" restores the default)' },
  budget: { type: 'string' as const, description: 'monthly LLM budget in USD (0: none)' },
};

export const keysGroup: Group = {
  name: 'keys',
  summary: 'API keys: create, list, revoke',
  commands: [
    {
      name: 'create', summary: 'create a key (its secret is shown once)', usage: '--scopes jobs:read,jobs:write [--name N] [--workspace WS] [--expires 90d]',
      options: {
        scopes: { type: 'string', description: 'jobs:read, jobs:write, queues:admin, keys:admin, usage:read, audit:read, workers:run, admin' },
        name: { type: 'string', description: 'a label' },
        workspace: { type: 'string', description: 'another workspace (admin)' },
        expires: { type: 'string', description: 'lifetime, e.g. 90d, or an ISO time' },
      },
      async run(ctx) {
        const scopes = list(ctx, 'scopes');
        if (scopes.length === 0) throw new UsageError('--scopes is required');
        const e = str(ctx, 'expires');
        const expiresAt = e ? (/^\d+(ms|s|m|h|d)$/.test(e) ? new Date(Date.now() + duration(e, 'expires')) : time(e, 'expires')) : undefined;
        const { apiKey, key } = await ctx.client.admin.createApiKey({ scopes, name: str(ctx, 'name'), workspaceId: str(ctx, 'workspace'), expiresAt });
        if (ctx.out.format === 'json') { ctx.out.write(`${JSON.stringify({ apiKey, key }, null, 2)}\n`); return; }
        ctx.out.write(`${table([keyRow(key)], keyColumns)}\nAPI key (shown only now):\n  ${apiKey}\n`);
      },
    },
    {
      name: 'list', summary: 'list a workspace\'s keys', usage: '[--workspace WS] [--include-revoked]',
      options: { workspace: { type: 'string', description: 'another workspace (admin)' }, 'include-revoked': { type: 'boolean', description: 'show revoked keys too' } },
      async run(ctx) {
        const keys = await ctx.client.admin.listApiKeys({ workspaceId: str(ctx, 'workspace'), includeRevoked: bool(ctx, 'include-revoked') });
        print(ctx.out, keys.map(keyRow), keyColumns, keys);
      },
    },
    {
      name: 'revoke', summary: 'revoke a key (stops working everywhere within 5 s)', usage: '<key id>',
      async run(ctx) {
        const k = await ctx.client.admin.revokeApiKey(required(ctx.args, 0, 'key id'));
        print(ctx.out, [keyRow(k)], keyColumns, k);
      },
    },
  ],
};

function policy(ctx: Parameters<Group['commands'][number]['run']>[0]) {
  const types = str(ctx, 'allowed-types');
  return {
    rateLimitPerMinute: integer(str(ctx, 'rate-limit'), 'rate-limit'),
    maxPending: integer(str(ctx, 'max-pending'), 'max-pending'),
    allowedJobTypes: types === undefined ? undefined : types.split(',').map((x) => x.trim()).filter(Boolean),
    monthlyBudgetUsd: number(str(ctx, 'budget'), 'budget'),
  };
}

export const workspacesGroup: Group = {
  name: 'workspaces',
  summary: 'workspaces: create, list, view, policy',
  commands: [
    {
      name: 'create', summary: 'create a workspace (admin)', usage: '<name> [--rate-limit N] [--max-pending N] [--allowed-types a,b] [--budget USD]',
      options: policyOptions,
      async run(ctx) {
        const p = policy(ctx);
        const w = await ctx.client.admin.createWorkspace(required(ctx.args, 0, 'name'), {
          rateLimitPerMinute: p.rateLimitPerMinute, maxPending: p.maxPending, allowedJobTypes: p.allowedJobTypes, monthlyBudgetUsd: p.monthlyBudgetUsd,
        });
        print(ctx.out, [wsRow(w)], wsColumns, w);
      },
    },
    {
      name: 'list', summary: 'every workspace (admin)', usage: '',
      async run(ctx) {
        const all = [];
        for await (const w of ctx.client.admin.listWorkspaces()) all.push(w);
        print(ctx.out, all.map(wsRow), wsColumns, all);
      },
    },
    {
      name: 'view', summary: 'your workspace (or another, admin)', usage: '[workspace id]',
      async run(ctx) {
        const w = await ctx.client.admin.getWorkspace(ctx.args[0] ?? '');
        print(ctx.out, [wsRow(w)], wsColumns, w);
      },
    },
    {
      name: 'policy', summary: 'change a workspace\'s limits (admin); fields not given stay', usage: '<workspace id> [--rate-limit N] [--max-pending N] [--allowed-types a,b] [--budget USD]',
      options: policyOptions,
      async run(ctx) {
        const w = await ctx.client.admin.updatePolicy(required(ctx.args, 0, 'workspace id'), policy(ctx));
        print(ctx.out, [wsRow(w)], wsColumns, w);
      },
    },
  ],
};

export const auditGroup: Group = {
  name: 'audit',
  summary: 'the audit log',
  commands: [
    {
      name: 'list', summary: 'audit events, newest first', usage: '[--action A] [--outcome denied] [--actor K] [--resource R] [--since 24h] [--limit N]',
      options: {
        action: { type: 'string', description: 'e.g. job.cancel, key.revoke' },
        outcome: { type: 'string', description: 'allowed, denied or failed' },
        actor: { type: 'string', description: 'key id or token subject' },
        resource: { type: 'string', description: 'e.g. job/<id>' },
        since: { type: 'string', description: 'ISO time or 24h (ago)' },
        until: { type: 'string', description: 'ISO time or 1h (ago)' },
        workspace: { type: 'string', description: 'another workspace (admin)' },
        limit: { type: 'string', description: 'at most N (default 100)' },
      },
      async run(ctx) {
        const outcome = str(ctx, 'outcome');
        if (outcome && !['allowed', 'denied', 'failed'].includes(outcome)) throw new UsageError('--outcome: allowed, denied or failed');
        const events = [];
        for await (const e of ctx.client.admin.auditEvents({
          action: str(ctx, 'action'), outcome: outcome as 'allowed' | undefined, actor: str(ctx, 'actor'),
          resource: str(ctx, 'resource'), workspaceId: str(ctx, 'workspace'),
          from: str(ctx, 'since') ? time(str(ctx, 'since')!, 'since') : undefined,
          to: str(ctx, 'until') ? time(str(ctx, 'until')!, 'until') : undefined, limit: integer(str(ctx, 'limit'), 'limit') ?? 100,
        })) events.push(e);
        print(ctx.out, events.map((e) => ({ time: e.time, actor: e.actor, action: e.action, resource: e.resource, outcome: e.outcome, reason: e.reason })),
          ['time', 'actor', 'action', 'resource', 'outcome', 'reason'], events);
      },
    },
  ],
};

const dimensions: UsageDimension[] = ['workspace', 'provider', 'model', 'queue', 'api_key', 'day'];

export const usageGroup: Group = {
  name: 'usage',
  summary: 'token and cost reports',
  commands: [
    {
      name: 'report', summary: 'tokens and cost over a range, grouped', usage: '[--from T --to T | --last-days N] [--group-by provider,model] [--format table|json|csv]',
      options: {
        from: { type: 'string', description: 'start: ISO time or 30d (ago); default: this month' },
        to: { type: 'string', description: 'end: ISO time; default now' },
        'last-days': { type: 'string', description: 'the last N days' },
        'group-by': { type: 'string', description: `any of ${dimensions.join(', ')}` },
        'all-workspaces': { type: 'boolean', description: 'every workspace (admin)' },
      },
      async run(ctx) {
        const groupBy = list(ctx, 'group-by').map((g) => {
          if (!(dimensions as string[]).includes(g)) throw new UsageError(`--group-by: "${g}" (one of ${dimensions.join(', ')})`);
          return g as UsageDimension;
        });
        const r = await ctx.client.usage.report({
          from: str(ctx, 'from') ? time(str(ctx, 'from')!, 'from') : undefined,
          to: str(ctx, 'to') ? time(str(ctx, 'to')!, 'to') : undefined,
          lastDays: integer(str(ctx, 'last-days'), 'last-days'), groupBy, allWorkspaces: bool(ctx, 'all-workspaces'),
        });
        const rows = (groupBy.length ? r.rows : [r.totals!]).map((x) => ({
          ...x.group, jobs: x.jobs, calls: x.calls, prompt_tokens: x.promptTokens, completion_tokens: x.completionTokens,
          cost_usd: Number(x.costUsd.toFixed(6)),
        }));
        print(ctx.out, rows, [...groupBy, 'jobs', 'calls', 'prompt_tokens', 'completion_tokens', 'cost_usd'], r);
        if (ctx.out.format === 'table') {
          ctx.out.write(`\n${r.startTime?.toISOString()} .. ${r.endTime?.toISOString()}: $${r.totals!.costUsd.toFixed(4)} total\n`);
        }
      },
    },
  ],
};
