import { AuthServiceService, durationToMs, type ApiKey, type Workspace } from '@aijob/contracts';
import { InvalidArgumentError, UnauthenticatedError } from '@aijob/core';
import { activeTraceId } from '@aijob/telemetry';
import type { CallContext, Implementation } from '@aijob/server';
import type { Authenticator } from './authenticator.js';
import type { SigningKeys } from './signing-keys.js';
import type { Actor, Tenancy } from './tenancy.js';
import type { ApiKeyInfo, WorkspaceRow } from '@aijob/store';

const opt = <T>(v: T | null): T | undefined => (v === null ? undefined : v);

export function toWorkspace(r: WorkspaceRow): Workspace {
  return {
    id: r.id, name: r.name, createdAt: r.createdAt, updatedAt: r.updatedAt,
    policy: {
      rateLimitPerMinute: r.rateLimitPerMinute, maxPending: r.maxPending,
      allowedJobTypes: r.allowedJobTypes ?? [], monthlyBudgetUsd: r.monthlyBudgetUsd ?? 0,
    },
  };
}

export function toApiKey(r: ApiKeyInfo): ApiKey {
  return {
    id: r.id, workspaceId: r.workspaceId, name: r.name, scopes: r.scopes, createdAt: r.createdAt,
    expiresAt: opt(r.expiresAt), revokedAt: opt(r.revokedAt), lastUsedAt: opt(r.lastUsedAt),
  };
}

const actorOf = (ctx: CallContext): Actor => ({ principal: ctx.principal!, traceId: activeTraceId(), requestId: ctx.requestId });

/** gRPC handlers of aijob.v1.AuthService: proto in, domain calls, proto out. */
export function authServiceHandlers(deps: {
  authenticator: Authenticator;
  keys: SigningKeys;
  tenancy: Tenancy;
  tokenTtlSeconds: number;
}): Implementation<typeof AuthServiceService> {
  const { tenancy } = deps;
  return {
    async issueToken(req) {
      if (!req.apiKey) throw InvalidArgumentError.field('api_key', 'required');
      const { principal } = await deps.authenticator.authenticateApiKey(req.apiKey);
      const { token, expiresAt } = await deps.keys.sign(
        { sub: principal.subject, ws: principal.workspaceId, scopes: principal.scopes }, deps.tokenTtlSeconds);
      return { token, expiresAt };
    },
    async authenticate(req) {
      if (!req.token) throw new UnauthenticatedError('token required');
      return deps.authenticator.authenticate(req.token);
    },
    async createWorkspace(req, ctx) {
      return { workspace: toWorkspace(await tenancy.createWorkspace(actorOf(ctx), req.name, req.policy)) };
    },
    async getWorkspace(req, ctx) {
      return { workspace: toWorkspace(await tenancy.getWorkspace(actorOf(ctx), req.workspaceId)) };
    },
    async listWorkspaces(req) {
      const { rows, next } = await tenancy.listWorkspaces(req.pageSize, req.pageToken);
      return { workspaces: rows.map(toWorkspace), nextPageToken: next };
    },
    async updateWorkspacePolicy(req, ctx) {
      const row = await tenancy.updatePolicy(actorOf(ctx), req.workspaceId, {
        rateLimitPerMinute: req.rateLimitPerMinute, maxPending: req.maxPending,
        allowedJobTypes: req.allowedJobTypes ? req.allowedJobTypes.types : undefined,
        monthlyBudgetUsd: req.monthlyBudgetUsd,
      });
      return { workspace: toWorkspace(row) };
    },
    async createApiKey(req, ctx) {
      const { key, row } = await tenancy.createKey(actorOf(ctx), {
        workspaceId: req.workspaceId, name: req.name, scopes: req.scopes, expiresAt: req.expiresAt,
      });
      return { apiKey: key, key: toApiKey(row) };
    },
    async listApiKeys(req, ctx) {
      return { keys: (await tenancy.listKeys(actorOf(ctx), req.workspaceId, req.includeRevoked)).map(toApiKey) };
    },
    async revokeApiKey(req, ctx) {
      return { key: toApiKey(await tenancy.revokeKey(actorOf(ctx), req.keyId)) };
    },
    async rotateSigningKey(req, ctx) {
      const retireAfterMs = req.retireAfter ? durationToMs(req.retireAfter) : 20 * 60_000;
      const r = await tenancy.rotate(actorOf(ctx), retireAfterMs);
      return { kid: r.kid, retiringKids: r.retiring, retireAt: r.retireAt };
    },
  };
}
