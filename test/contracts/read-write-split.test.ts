import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import type { Knex } from 'knex';
import { pino, type Logger } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Database } from '../../src/db/database.js';
import { openMysql } from '../../src/db/knex.js';
import { migrateToLatest } from '../../src/db/migrate.js';
import { UsersRepository } from '../../src/db/users.repository.js';
import { createScratchDatabase, servicesAvailable } from '../support/services.js';

const clusterUp = await servicesAvailable('read/write split (cluster)', ['mariadb-pair']);

/** A pino logger whose JSON lines land in `lines`. */
function capturingLogger(): { logger: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) lines.push(JSON.parse(line));
      done();
    },
  });
  return { logger: pino({ level: 'debug' }, sink), lines };
}

const serverId = async (knex: Knex): Promise<number> => {
  const [rows] = (await knex.raw('SELECT @@server_id AS id')) as [Array<{ id: number }>];
  return Number(rows[0]!.id);
};

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe.skipIf(!clusterUp)('read/write split on the real MariaDB pair', () => {
  let scratch: Awaited<ReturnType<typeof createScratchDatabase>>;
  let primary: Knex;
  let replica: Knex;
  let primaryId: number;
  let replicaId: number;
  const opened: Database[] = [];
  const extraKnex: Knex[] = [];

  /** A Database over the shared pools; closed by afterAll through the pools themselves. */
  const database = (readYourWritesMs: number, logger: Logger = pino({ level: 'silent' })) =>
    new Database(primary, replica, { readYourWritesMs, logger });

  beforeAll(async () => {
    scratch = await createScratchDatabase();
    primary = openMysql(scratch.primaryUrl, { connectTimeoutMs: 5000, poolMax: 4 });
    replica = openMysql(scratch.replicaUrl, { connectTimeoutMs: 1500, poolMax: 4 });
    await migrateToLatest(primary);
    primaryId = await serverId(primary);
    replicaId = await serverId(replica);
  });
  afterAll(async () => {
    await Promise.allSettled([...opened.map((db) => db.close()), ...extraKnex.map((k) => k.destroy())]);
    await Promise.allSettled([primary?.destroy(), replica?.destroy()]);
    await scratch?.drop();
  });

  it('talks to two different servers (the primary and its replica)', () => {
    expect(primaryId).not.toBe(replicaId);
  });

  it('sends writes and must-see-everything reads to the primary, lag-tolerant reads to the replica', async () => {
    const db = database(5000);
    expect(await db.write(null, serverId)).toBe(primaryId);
    expect(await db.readPrimary(serverId)).toBe(primaryId);
    expect(await db.read(null, serverId)).toBe(replicaId);
    expect(await db.read(randomUUID(), serverId)).toBe(replicaId);
  });

  it('sends a user’s reads to the primary right after that user wrote, and only that user’s', async () => {
    const db = database(5000);
    const writer = randomUUID();
    await db.write(writer, serverId);
    expect(await db.read(writer, serverId)).toBe(primaryId);
    expect(await db.read(randomUUID(), serverId)).toBe(replicaId);
    expect(await db.read(null, serverId)).toBe(replicaId);
  });

  it('lets a user read back what they just wrote, every time', async () => {
    const db = database(5000);
    const users = new UsersRepository(db);
    for (let i = 0; i < 25; i++) {
      const id = randomUUID();
      await users.create({ id, username: `ryw_${i}_${id.slice(0, 8)}`, password_hash: 'x', created_at: Date.now() });
      expect(await users.findById(id)).toMatchObject({ id });
    }
  });

  it('counts a transaction as a write for read-your-writes', async () => {
    const db = database(5000);
    const writer = randomUUID();
    await db.transaction(writer, async (trx) => trx.raw('SELECT 1'));
    expect(await db.read(writer, serverId)).toBe(primaryId);
  });

  it('sends a user’s reads back to the replica once the read-your-writes window has passed', async () => {
    const db = database(200);
    const writer = randomUUID();
    await db.write(writer, serverId);
    expect(await db.read(writer, serverId)).toBe(primaryId);
    await sleep(300);
    expect(await db.read(writer, serverId)).toBe(replicaId);
  });

  it('answers a replica read from the primary, with one warning, when the replica port is closed', async () => {
    const deadReplica = openMysql('mysql://app:app@127.0.0.1:1/filestore', { connectTimeoutMs: 1000, poolMax: 2 });
    extraKnex.push(deadReplica);
    const { logger, lines } = capturingLogger();
    const db = new Database(primary, deadReplica, { readYourWritesMs: 5000, logger });
    expect(await db.read(null, serverId)).toBe(primaryId);
    const warnings = lines.filter((line) => line.level === 40);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]!.msg).toMatch(/replica unreachable/);
    expect(warnings[0]!.err).toBeDefined();
    // the outage is remembered: the next reads go straight to the primary, fast and without new warnings
    const started = Date.now();
    for (let i = 0; i < 5; i++) expect(await db.read(null, serverId)).toBe(primaryId);
    expect(Date.now() - started).toBeLessThan(500);
    expect(lines.filter((line) => line.level === 40)).toHaveLength(1);
  });

  it('does not hide a query error on a reachable replica behind a primary fallback', async () => {
    const { logger, lines } = capturingLogger();
    const db = new Database(primary, replica, { readYourWritesMs: 5000, logger });
    await expect(db.read(null, (knex) => knex.raw('SELECT * FROM no_such_table'))).rejects.toThrow(/no_such_table/);
    expect(lines.filter((line) => line.level === 40)).toHaveLength(0);
    expect(await db.read(null, serverId)).toBe(replicaId);
  });

  it('routes to a replica knex on a different database than the primary (routing, not replication)', async () => {
    // The replica here is the primary server's *other* scratch database: a row written through
    // db.write is only visible through db.read(null) if reads really went to the primary.
    const other = await createScratchDatabase();
    const otherKnex = openMysql(other.primaryUrl, { connectTimeoutMs: 5000, poolMax: 2 });
    try {
      await migrateToLatest(otherKnex);
      const db = new Database(primary, otherKnex, { readYourWritesMs: 5000, logger: pino({ level: 'silent' }) });
      const users = new UsersRepository(db);
      const id = randomUUID();
      await users.create({ id, username: `route_${id.slice(0, 8)}`, password_hash: 'x', created_at: Date.now() });
      expect(await users.findById(id)).toMatchObject({ id });
      expect(await db.read(null, (knex) => knex('users').where({ id }).first())).toBeUndefined();
      expect(await db.read(randomUUID(), (knex) => knex('users').where({ id }).first())).toBeUndefined();
    } finally {
      await otherKnex.destroy();
      await other.drop();
    }
  });
});
