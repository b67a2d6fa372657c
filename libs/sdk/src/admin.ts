import {
  msToDuration, type ApiKey, type AuditEvent, type AuthServiceClient, type CreateApiKeyResponse,
  type CreateWorkspaceResponse, type GetWorkspaceResponse, type IssueTokenResponse, type JobServiceClient,
  type ListApiKeysResponse, type ListAuditEventsResponse, type ListWorkspacesResponse, type RevokeApiKeyResponse,
  type RotateSigningKeyResponse, type UpdateWorkspacePolicyResponse, type Workspace, type WorkspacePolicy,
} from '@aijob/contracts';
import type { CallOptions, Unary } from './calls.js';

export interface AuditQuery {
  workspaceId?: string;
  action?: string;
  outcome?: 'allowed' | 'denied' | 'failed';
  actor?: string;
  resource?: string;
  from?: Date;
  to?: Date;
  pageSize?: number;
  limit?: number;
}

export interface PolicyUpdate {
  rateLimitPerMinute?: number;
  maxPending?: number;
  /** [] restores the platform default. */
  allowedJobTypes?: string[];
  monthlyBudgetUsd?: number;
}

/** Workspaces, keys, signing keys and the audit log (`client.admin`); needs `authAddress`. */
export class AdminApi {
  constructor(
    private readonly auth: () => AuthServiceClient,
    private readonly jobs: JobServiceClient,
    private readonly unary: Unary,
  ) {}

  async createWorkspace(name: string, policy: Partial<WorkspacePolicy> = {}, opts?: CallOptions): Promise<Workspace> {
    const given = Object.fromEntries(Object.entries(policy).filter(([, v]) => v !== undefined));
    const full: WorkspacePolicy = { rateLimitPerMinute: 0, maxPending: 0, allowedJobTypes: [], monthlyBudgetUsd: 0, ...given };
    return (await this.unary<CreateWorkspaceResponse>((md, co, cb) => this.auth().createWorkspace({ name, policy: full }, md, co, cb), opts, false)).workspace!;
  }

  async getWorkspace(workspaceId = '', opts?: CallOptions): Promise<Workspace> {
    return (await this.unary<GetWorkspaceResponse>((md, co, cb) => this.auth().getWorkspace({ workspaceId }, md, co, cb), opts, true)).workspace!;
  }

  async *listWorkspaces(opts?: CallOptions): AsyncGenerator<Workspace> {
    let pageToken = '';
    do {
      const page = await this.unary<ListWorkspacesResponse>((md, co, cb) =>
        this.auth().listWorkspaces({ pageSize: 100, pageToken }, md, co, cb), opts, true);
      yield* page.workspaces;
      pageToken = page.nextPageToken;
    } while (pageToken);
  }

  async updatePolicy(workspaceId: string, p: PolicyUpdate, opts?: CallOptions): Promise<Workspace> {
    return (await this.unary<UpdateWorkspacePolicyResponse>((md, co, cb) => this.auth().updateWorkspacePolicy({
      workspaceId, rateLimitPerMinute: p.rateLimitPerMinute, maxPending: p.maxPending,
      allowedJobTypes: p.allowedJobTypes ? { types: p.allowedJobTypes } : undefined, monthlyBudgetUsd: p.monthlyBudgetUsd,
    }, md, co, cb), opts, true)).workspace!;
  }

  /** Creates a key; `apiKey` is its secret, shown only now. */
  async createApiKey(k: { scopes: string[]; name?: string; workspaceId?: string; expiresAt?: Date }, opts?: CallOptions):
    Promise<{ apiKey: string; key: ApiKey }> {
    const res = await this.unary<CreateApiKeyResponse>((md, co, cb) => this.auth().createApiKey({
      workspaceId: k.workspaceId ?? '', name: k.name ?? '', scopes: k.scopes, expiresAt: k.expiresAt,
    }, md, co, cb), opts, false);
    return { apiKey: res.apiKey, key: res.key! };
  }

  async listApiKeys(q: { workspaceId?: string; includeRevoked?: boolean } = {}, opts?: CallOptions): Promise<ApiKey[]> {
    return (await this.unary<ListApiKeysResponse>((md, co, cb) => this.auth().listApiKeys({
      workspaceId: q.workspaceId ?? '', includeRevoked: q.includeRevoked ?? false,
    }, md, co, cb), opts, true)).keys;
  }

  async revokeApiKey(keyId: string, opts?: CallOptions): Promise<ApiKey> {
    return (await this.unary<RevokeApiKeyResponse>((md, co, cb) => this.auth().revokeApiKey({ keyId }, md, co, cb), opts, true)).key!;
  }

  async rotateSigningKey(retireAfterMs?: number, opts?: CallOptions): Promise<RotateSigningKeyResponse> {
    return this.unary<RotateSigningKeyResponse>((md, co, cb) => this.auth().rotateSigningKey({
      retireAfter: retireAfterMs === undefined ? undefined : msToDuration(retireAfterMs),
    }, md, co, cb), opts, false);
  }

  /** Exchanges an API key for a short-lived JWT. */
  async issueToken(apiKey: string, opts?: CallOptions): Promise<IssueTokenResponse> {
    return this.unary<IssueTokenResponse>((md, co, cb) => this.auth().issueToken({ apiKey }, md, co, cb), opts, true);
  }

  /** Audit events, newest first, fetching pages as you iterate. */
  async *auditEvents(q: AuditQuery = {}, opts?: CallOptions): AsyncGenerator<AuditEvent> {
    let pageToken = '';
    let n = 0;
    do {
      const page = await this.unary<ListAuditEventsResponse>((md, co, cb) => this.jobs.listAuditEvents({
        workspaceId: q.workspaceId ?? '', action: q.action ?? '', outcome: q.outcome ?? '', actor: q.actor ?? '',
        resource: q.resource ?? '', startTime: q.from, endTime: q.to, pageSize: q.pageSize ?? 100, pageToken,
      }, md, co, cb), opts, true);
      for (const e of page.events) {
        yield e;
        if (q.limit !== undefined && ++n >= q.limit) return;
      }
      pageToken = page.nextPageToken;
    } while (pageToken);
  }
}
