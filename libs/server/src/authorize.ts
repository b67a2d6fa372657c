import { createHash, timingSafeEqual } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { AuthServiceClient, type Principal, type WorkspacePolicy } from '@aijob/contracts';
import { hasScope, isAijobError, PermissionDeniedError, UnauthenticatedError, UnavailableError, type Scope } from '@aijob/core';
import { internalChannelOptions } from '@aijob/telemetry';
import type { CallContext } from './grpc-server.js';

const MAX_CREDENTIAL = 4096;
/** Long enough to ride out an auth service restart (a few seconds), short of clients' deadlines. */
const AUTH_DEADLINE_MS = 5_000;

/** The credential of `authorization: Bearer <api key or JWT>`, or UNAUTHENTICATED. */
export function bearerCredential(metadata: grpc.Metadata): string {
  const values = metadata.get('authorization');
  if (values.length === 0) throw new UnauthenticatedError('missing authorization metadata (Bearer <api key or token>)');
  const raw = values[0];
  if (typeof raw !== 'string' || raw.length > MAX_CREDENTIAL + 7) throw new UnauthenticatedError('malformed authorization metadata');
  const match = /^Bearer ([\x21-\x7e]+)$/i.exec(raw.trim());
  if (!match) throw new UnauthenticatedError('authorization must be "Bearer <api key or token>"');
  return match[1]!;
}

/** The `exp` of a JWT in ms (unverified: only used to bound caching), or undefined. */
function jwtExpiry(credential: string): number | undefined {
  const parts = credential.split('.');
  if (parts.length !== 3) return undefined;
  try {
    const exp = (JSON.parse(Buffer.from(parts[1]!, 'base64url').toString()) as { exp?: unknown }).exp;
    return typeof exp === 'number' ? exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}

function sameSecret(a: string, b: string): boolean {
  const ha = createHash('sha256').update(a).digest();
  const hb = createHash('sha256').update(b).digest();
  return timingSafeEqual(ha, hb);
}

/** Who a credential stands for, and the policy of its workspace. */
export interface Identity {
  principal: Principal;
  policy?: WorkspacePolicy;
}

const WORKSPACE_HEADER = 'x-aijob-workspace';
const WORKSPACE_ID = /^[\w-]{1,128}$/;

/**
 * The access check every gRPC server runs before a handler (see scopes.ts):
 * `public` passes; `internal` needs INTERNAL_TOKEN in `x-aijob-internal` when one is set;
 * a scope needs a credential whose principal holds it (or `admin`). An admin may act in
 * another workspace by naming it in `x-aijob-workspace`. Refusals are reported to
 * `onDenied` (for the audit log) before they reach the caller.
 */
export function makeAuthorizer(opts: {
  authenticate: (credential: string) => Promise<Identity>;
  internalToken?: string;
  onDenied?: (ctx: CallContext, err: Error) => void;
}): (ctx: CallContext, access: string) => Promise<void> {
  const check = async (ctx: CallContext, access: string) => {
    if (access === 'public') return;
    if (access === 'internal') {
      if (!opts.internalToken) return;
      const given = ctx.metadata.get('x-aijob-internal')[0];
      if (typeof given !== 'string' || !sameSecret(given, opts.internalToken)) {
        throw new UnauthenticatedError('internal RPC without a valid x-aijob-internal token');
      }
      return;
    }
    const identity = await opts.authenticate(bearerCredential(ctx.metadata));
    ctx.principal = identity.principal;
    ctx.policy = identity.policy;
    if (!hasScope(identity.principal.scopes, access as Scope)) {
      throw new PermissionDeniedError(`${ctx.method.split('/')[1]} needs scope ${access}`);
    }
    const named = ctx.metadata.get(WORKSPACE_HEADER)[0];
    if (named !== undefined && named !== identity.principal.workspaceId) {
      if (typeof named !== 'string' || !WORKSPACE_ID.test(named)) throw new PermissionDeniedError(`malformed ${WORKSPACE_HEADER}`);
      if (!identity.principal.scopes.includes('admin')) throw new PermissionDeniedError('only admin may act in another workspace');
      ctx.principal = { ...identity.principal, workspaceId: named };
      ctx.policy = undefined;
    }
  };
  return async (ctx, access) => {
    try {
      await check(ctx, access);
    } catch (err) {
      if (opts.onDenied && isAijobError(err) && (err.kind === 'unauthenticated' || err.kind === 'permission_denied')) {
        opts.onDenied(ctx, err);
      }
      throw err;
    }
  };
}

/**
 * AuthService.Authenticate behind a short cache, shared by concurrent lookups of the
 * same credential. Entries live `ttlMs` (kept under the 5 s revocation promise) and
 * `clear()` drops them all when the auth service announces a revocation.
 */
export class CachedAuthClient {
  private readonly client: AuthServiceClient;
  private readonly cache = new Map<string, { at: number; identity?: Identity; error?: Error }>();
  private readonly inflight = new Map<string, Promise<Identity>>();

  constructor(address: string, private readonly opts: { ttlMs?: number; maxEntries?: number; internalToken?: string } = {}) {
    this.client = new AuthServiceClient(address, grpc.credentials.createInsecure(), internalChannelOptions);
  }

  authenticate = async (credential: string): Promise<Identity> => {
    const key = createHash('sha256').update(credential).digest('base64url');
    const hit = this.cache.get(key);
    const ttl = this.opts.ttlMs ?? 3_000;
    if (hit && Date.now() - hit.at < (hit.error ? Math.min(ttl, 1_000) : ttl)) {
      if (hit.error) throw hit.error;
      return hit.identity!;
    }
    const running = this.inflight.get(key);
    if (running) return running;
    const p = this.lookup(credential).then(
      (identity) => {
        // A JWT is never trusted past its own expiry, whatever the cache time.
        const exp = jwtExpiry(credential);
        const at = exp === undefined ? Date.now() : Math.min(Date.now(), exp - ttl);
        this.remember(key, { at, identity });
        return identity;
      },
      (err: Error) => { if (err instanceof UnauthenticatedError) this.remember(key, { at: Date.now(), error: err }); throw err; },
    ).finally(() => this.inflight.delete(key));
    this.inflight.set(key, p);
    return p;
  };

  clear(): void {
    this.cache.clear();
  }

  /** Readiness probe: the auth service answers. */
  async ping(): Promise<void> {
    await new Promise<void>((resolve, reject) =>
      this.client.waitForReady(Date.now() + 1_500, (err) => (err ? reject(new Error('auth service unreachable')) : resolve())));
  }

  close(): void {
    this.client.close();
  }

  private remember(key: string, entry: { at: number; identity?: Identity; error?: Error }) {
    if (this.cache.size >= (this.opts.maxEntries ?? 10_000)) {
      const oldest = this.cache.keys().next().value;
      if (oldest !== undefined) this.cache.delete(oldest);
    }
    this.cache.set(key, entry);
  }

  private lookup(credential: string): Promise<Identity> {
    const md = new grpc.Metadata({ waitForReady: true });
    if (this.opts.internalToken) md.set('x-aijob-internal', this.opts.internalToken);
    return new Promise((resolve, reject) => {
      this.client.authenticate({ token: credential }, md, { deadline: Date.now() + AUTH_DEADLINE_MS }, (err, res) => {
        if (!err && res.principal) return resolve({ principal: res.principal, policy: res.policy });
        if (err?.code === grpc.status.UNAUTHENTICATED) return reject(new UnauthenticatedError(err.details));
        reject(new UnavailableError(`auth service unavailable: ${err?.details ?? 'no principal'}`));
      });
    });
  }
}
