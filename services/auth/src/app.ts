import { AuthServiceService } from '@aijob/contracts';
import { connectBus, topology } from '@aijob/bus';
import { createLogger } from '@aijob/core';
import { collectProcessMetrics } from '@aijob/telemetry';
import { GrpcServer, handleShutdown, json, makeAuthorizer, Readiness, startOpsServer } from '@aijob/server';
import { AuditWriter, auditDenied, auditRefused, createStore, runMigrations } from '@aijob/store';
import { authServiceHandlers } from './auth-service.js';
import { Authenticator } from './authenticator.js';
import { bootstrap } from './bootstrap.js';
import { stopTelemetry } from '@aijob/server/telemetry';
import { loadAuthConfig } from './config.js';
import { KeyEncryption } from './key-encryption.js';
import { SigningKeys } from './signing-keys.js';
import { Tenancy } from './tenancy.js';

const config = loadAuthConfig();
const log = createLogger('auth', config.LOG_LEVEL);
collectProcessMetrics();

if (config.MIGRATE_ON_START) await runMigrations(config.DATABASE_URL);
const store = createStore(config.DATABASE_URL, { max: config.DATABASE_POOL_MAX, applicationName: 'aijob-auth' });
const t = topology(config.AIJOB_NAMESPACE);
const bus = await connectBus({ servers: config.NATS_URL, user: config.NATS_USER, pass: config.NATS_PASSWORD, name: 'aijob-auth', log });
const kek = new KeyEncryption(config.keyEncryptionKeys);
if (kek.development) {
  log.warn('SIGNING_KEY_ENCRYPTION_KEY is unset: signing keys are sealed with the public development key (never in production)');
}
const keys = new SigningKeys(store, kek, log, { issuer: config.TOKEN_ISSUER, audience: config.TOKEN_AUDIENCE });
await keys.ensureActive();
// Another replica rotated: load the new key now rather than at the next refresh.
const rotations = bus.nc.subscribe(t.subjects.authChanged, {
  callback: (_err, msg) => { if (msg.string() === 'rotated') void keys.reload().catch(() => undefined); },
});
await bootstrap(store, {
  workspace: config.BOOTSTRAP_WORKSPACE, apiKey: config.AIJOB_BOOTSTRAP_API_KEY,
  rateLimitPerMinute: config.BOOTSTRAP_RATE_LIMIT_PER_MINUTE, log,
});
const authenticator = new Authenticator(store, keys, log);
const audit = new AuditWriter(store.sql, log);
const tenancy = new Tenancy(store, keys, {
  rateLimitPerMinute: config.DEFAULT_RATE_LIMIT_PER_MINUTE, maxPending: config.DEFAULT_MAX_PENDING,
}, (what) => bus.nc.publish(t.subjects.authChanged, what));

const grpc = new GrpcServer({
  log,
  authorize: makeAuthorizer({
    authenticate: (c) => authenticator.authenticate(c), internalToken: config.INTERNAL_TOKEN,
    onDenied: auditDenied(audit),
  }),
  // Missing and other workspaces' keys and workspaces are audited like any refusal.
  onHandlerError: auditRefused(audit, { notFound: true }),
});
grpc.add(AuthServiceService, authServiceHandlers({ authenticator, keys, tenancy, tokenTtlSeconds: config.TOKEN_TTL_SECONDS }));
const grpcPort = await grpc.listen(config.GRPC_HOST, config.GRPC_PORT);

const readiness = new Readiness({ postgres: store.ping, nats: bus.ping });
const ops = await startOpsServer({
  host: config.GRPC_HOST, port: config.OPS_PORT, readiness,
  routes: { '/.well-known/jwks.json': async (_req, res) => json(res, 200, await keys.jwks()) },
});
readiness.watch(2_000, (ready) => grpc.setServing(ready));
log.info({ grpc_port: grpcPort, ops_port: ops.port }, 'auth service listening');

handleShutdown(log, [
  { name: 'readiness', run: () => { readiness.drain(); readiness.stop(); } },
  { name: 'grpc', run: () => grpc.shutdown(config.SHUTDOWN_GRACE_MS) },
  { name: 'audit', run: () => audit.close() },
  { name: 'ops', run: () => ops.close() },
  { name: 'nats', run: () => { rotations.unsubscribe(); return bus.close(); } },
  { name: 'postgres', run: () => store.close() },
  { name: 'telemetry', run: () => stopTelemetry() },
]);
