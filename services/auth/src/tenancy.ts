import type { Principal, WorkspacePolicy } from '@aijob/contracts';
import {
  AlreadyExistsError, InvalidArgumentError, NotFoundError, operatorScopes, PermissionDeniedError, scopes,
  type FieldViolation, type Scope,
} from '@aijob/core';
import {
  audited, findApiKey, findWorkspace, insertApiKey, insertAudit, insertWorkspace, listApiKeys, listWorkspaces, revokeApiKey,
  updateWorkspacePolicy, type ApiKeyInfo, type AuditRecord, type PolicyChange, type Store, type WorkspaceRow,
} from '@aijob/store';
import { newApiKey, newWorkspaceId } from './keys.js';
import type { SigningKeys } from './signing-keys.js';

/** Who acts, for authorization and the audit trail. */
export interface Actor {
  principal: Principal;
  traceId: string;
  requestId: string;
}

export interface TenancyDefaults {
  rateLimitPerMinute: number;
  maxPending: number;
}

const NAME = /^[a-z0-9][a-z0-9_-]{0,63}$/;
const JOB_TYPE = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
const isAdmin = (a: Actor) => a.principal.scopes.includes('admin');

/**
 * Workspaces, policies, keys and signing-key rotation: the auth service's domain. Every
 * change writes its audit row in the same transaction.
 */
export class Tenancy {
  constructor(
    private readonly store: Store,
    private readonly keys: SigningKeys,
    private readonly defaults: TenancyDefaults,
    /** Tells every replica of every service to drop cached credentials. */
    private readonly announce: (what: string) => void,
  ) {}

  async createWorkspace(actor: Actor, name: string, policy: WorkspacePolicy | undefined): Promise<WorkspaceRow> {
    const v: FieldViolation[] = [];
    if (!NAME.test(name)) v.push({ field: 'name', description: 'must be 1-64 characters of a-z, 0-9, _ and -' });
    const p = checkPolicy({
      rateLimitPerMinute: policy?.rateLimitPerMinute, maxPending: policy?.maxPending,
      allowedJobTypes: policy?.allowedJobTypes.length ? policy.allowedJobTypes : undefined,
      monthlyBudgetUsd: policy?.monthlyBudgetUsd,
    }, v, 'policy.');
    if (v.length) throw new InvalidArgumentError(v);
    const id = newWorkspaceId();
    const row = await audited(this.store.db, this.audit(actor, 'workspace.create', `workspace/${id}`), (tx) => insertWorkspace(tx, {
      id, name,
      rateLimitPerMinute: p.rateLimitPerMinute || this.defaults.rateLimitPerMinute,
      maxPending: p.maxPending || this.defaults.maxPending,
      allowedJobTypes: p.allowedJobTypes ?? null,
      monthlyBudgetUsd: p.monthlyBudgetUsd || null,
    }));
    if (!row) throw new AlreadyExistsError(`workspace "${name}" already exists`);
    return row;
  }

  async getWorkspace(actor: Actor, id: string): Promise<WorkspaceRow> {
    const target = this.targetWorkspace(actor, id);
    const row = await findWorkspace(this.store.db, target);
    if (!row) throw new NotFoundError('workspace', target).about(`workspace/${target}`);
    return row;
  }

  async listWorkspaces(pageSize: number, pageToken: string): Promise<{ rows: WorkspaceRow[]; next: string }> {
    if (pageSize < 0 || pageSize > 1000) throw InvalidArgumentError.field('page_size', 'must be between 0 and 1000');
    const limit = pageSize || 100;
    const after = pageToken ? Buffer.from(pageToken, 'base64url').toString() : '';
    const rows = await listWorkspaces(this.store.db, after, limit + 1);
    const page = rows.slice(0, limit);
    return { rows: page, next: rows.length > limit ? Buffer.from(page[page.length - 1]!.id).toString('base64url') : '' };
  }

  async updatePolicy(actor: Actor, id: string, change: PolicyChange): Promise<WorkspaceRow> {
    if (!id) throw InvalidArgumentError.field('workspace_id', 'required');
    const v: FieldViolation[] = [];
    const c = checkPolicy(change, v, '');
    if (v.length) throw new InvalidArgumentError(v);
    const row = await audited(this.store.db, this.audit(actor, 'workspace.policy_update', `workspace/${id}`, id),
      (tx) => updateWorkspacePolicy(tx, id, c));
    if (!row) throw new NotFoundError('workspace', id).about(`workspace/${id}`);
    this.announce('policy');
    return row;
  }

  async createKey(actor: Actor, req: { workspaceId: string; name: string; scopes: string[]; expiresAt?: Date }):
    Promise<{ key: string; row: ApiKeyInfo }> {
    const ws = this.targetWorkspace(actor, req.workspaceId);
    const v: FieldViolation[] = [];
    if (req.name.length > 128) v.push({ field: 'name', description: 'must be at most 128 characters' });
    if (req.scopes.length === 0) v.push({ field: 'scopes', description: 'at least one scope' });
    for (const s of req.scopes) {
      if (!(scopes as readonly string[]).includes(s)) v.push({ field: 'scopes', description: `unknown scope "${s}"` });
    }
    if (req.expiresAt && req.expiresAt.getTime() <= Date.now()) v.push({ field: 'expires_at', description: 'must be in the future' });
    if (v.length) throw new InvalidArgumentError(v);
    if (!isAdmin(actor)) {
      // Operator scopes act on the whole platform (shared queues): only an admin grants them.
      const operator = req.scopes.filter((s) => operatorScopes.includes(s as Scope));
      if (operator.length) throw new PermissionDeniedError(`only an admin may grant ${operator.join(', ')}`);
      const beyond = req.scopes.filter((s) => !actor.principal.scopes.includes(s));
      if (beyond.length) throw new PermissionDeniedError(`cannot grant scopes you do not hold: ${beyond.join(', ')}`);
    }
    if (!(await findWorkspace(this.store.db, ws))) throw new NotFoundError('workspace', ws).about(`workspace/${ws}`);
    const k = newApiKey();
    const row = await audited(this.store.db, this.audit(actor, 'key.create', `key/${k.id}`, ws), (tx) => insertApiKey(tx, {
      id: k.id, workspaceId: ws, name: req.name, secretHash: k.hash, scopes: [...new Set(req.scopes)], expiresAt: req.expiresAt ?? null,
    }));
    return { key: k.key, row: row! };
  }

  async listKeys(actor: Actor, workspaceId: string, includeRevoked: boolean): Promise<ApiKeyInfo[]> {
    return listApiKeys(this.store.db, this.targetWorkspace(actor, workspaceId), includeRevoked);
  }

  async revokeKey(actor: Actor, keyId: string): Promise<ApiKeyInfo> {
    if (!keyId) throw InvalidArgumentError.field('key_id', 'required');
    const existing = await findApiKey(this.store.db, keyId);
    // Missing and another workspace's look the same, to the caller and in its audit row.
    if (!existing || (existing.workspaceId !== actor.principal.workspaceId && !isAdmin(actor))) {
      throw new NotFoundError('key', keyId).about(`key/${keyId.slice(0, 128)}`);
    }
    const row = await audited(this.store.db, this.audit(actor, 'key.revoke', `key/${keyId}`, existing.workspaceId),
      (tx) => revokeApiKey(tx, keyId));
    this.announce('revoked');
    return row!;
  }

  async rotate(actor: Actor, retireAfterMs: number): Promise<{ kid: string; retiring: string[]; retireAt: Date }> {
    if (retireAfterMs < 0 || retireAfterMs > 30 * 86_400_000) {
      throw InvalidArgumentError.field('retire_after', 'must be between 0 and 30 days');
    }
    const r = await this.keys.rotate(retireAfterMs,
      (tx, kid) => insertAudit(tx, this.audit(actor, 'signing_key.rotate', `signing_key/${kid}`)));
    this.announce('rotated');
    return r;
  }

  /** The workspace a request names; another one than the caller's needs admin. */
  private targetWorkspace(actor: Actor, named: string): string {
    if (!named || named === actor.principal.workspaceId) return actor.principal.workspaceId;
    if (!isAdmin(actor)) throw new NotFoundError('workspace', named).about(`workspace/${named.slice(0, 128)}`);
    return named;
  }

  private audit(actor: Actor, action: string, resource: string, workspaceId = actor.principal.workspaceId): AuditRecord {
    return {
      actor: actor.principal.subject, workspaceId, action, resource, outcome: 'allowed',
      traceId: actor.traceId, requestId: actor.requestId,
    };
  }
}

/** Validates a policy change, collecting violations; returns it normalised. */
function checkPolicy(c: PolicyChange, v: FieldViolation[], prefix: string): PolicyChange {
  const bad = (f: string, d: string) => v.push({ field: prefix + f, description: d });
  if (c.rateLimitPerMinute !== undefined && (c.rateLimitPerMinute < 0 || c.rateLimitPerMinute > 100_000_000)) {
    bad('rate_limit_per_minute', 'must be between 0 (unlimited) and 100000000');
  }
  if (c.maxPending !== undefined && (c.maxPending < 0 || c.maxPending > 100_000_000)) {
    bad('max_pending', 'must be between 0 (no workspace limit) and 100000000');
  }
  if (c.allowedJobTypes) {
    if (c.allowedJobTypes.length > 256) bad('allowed_job_types', 'at most 256 types');
    for (const t of c.allowedJobTypes) if (!JOB_TYPE.test(t)) bad('allowed_job_types', `"${t.slice(0, 64)}" is not a job type`);
  }
  if (c.monthlyBudgetUsd !== undefined && c.monthlyBudgetUsd !== null &&
    (!Number.isFinite(c.monthlyBudgetUsd) || c.monthlyBudgetUsd < 0)) {
    bad('monthly_budget_usd', 'must be a non-negative number (0 for none)');
  }
  return {
    ...c,
    allowedJobTypes: c.allowedJobTypes === undefined ? undefined : c.allowedJobTypes && c.allowedJobTypes.length ? [...new Set(c.allowedJobTypes)] : null,
    monthlyBudgetUsd: c.monthlyBudgetUsd === undefined ? undefined : c.monthlyBudgetUsd || null,
  };
}

