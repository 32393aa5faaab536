import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Logger } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { openSqlite, sqliteFile } from '../../src/db/knex.js';
import { SqliteCheckpointer } from '../../src/db/sqlite-checkpointer.js';

const cleanups: Array<() => Promise<unknown>> = [];
/** A logger that keeps what the checkpointer warns about. */
function warnings(): { logger: Logger; failures: unknown[] } {
  const failures: unknown[] = [];
  return { logger: { warn: (fields: unknown) => failures.push(fields) } as unknown as Logger, failures };
}

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function databaseWithLog(): Promise<{ dir: string; file: string }> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'filestore-checkpoint-'));
  const knex = openSqlite(dir);
  cleanups.push(() => fsp.rm(dir, { recursive: true, force: true }));
  await knex.schema.createTable('t', (table) => table.text('v'));
  const row = { v: 'x'.repeat(4000) };
  for (let i = 0; i < 10; i++) await knex('t').insert(Array.from({ length: 50 }, () => row));
  // kept open, as a server keeps it: its close would checkpoint by itself
  cleanups.push(() => knex.destroy());
  return { dir, file: sqliteFile(dir) };
}

describe('SQLite checkpoints on their own thread', () => {
  it('leaves ~2 MB of commits in the write-ahead log while no checkpointer runs (the connection waits for 16000 pages)', async () => {
    const { file } = await databaseWithLog();
    await new Promise((resolve) => setTimeout(resolve, 600));
    expect(fs.statSync(`${file}-wal`).size).toBeGreaterThan(1_500_000);
    expect(fs.statSync(file).size).toBeLessThan(500_000);
  });

  it('copies the log into the database file within a few rounds, while the connection stays open', async () => {
    const { file } = await databaseWithLog();
    const { logger, failures } = warnings();
    const checkpointer = new SqliteCheckpointer(file, logger);
    cleanups.push(() => checkpointer.close());
    const deadline = Date.now() + 5000;
    while (fs.statSync(file).size < 1_500_000 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
    expect(fs.statSync(file).size).toBeGreaterThan(1_500_000);
    expect(failures).toEqual([]);
  });

  it('waits quietly for a database file that does not exist yet', async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'filestore-checkpoint-'));
    cleanups.push(() => fsp.rm(dir, { recursive: true, force: true }));
    const { logger, failures } = warnings();
    const checkpointer = new SqliteCheckpointer(sqliteFile(dir), logger);
    await new Promise((resolve) => setTimeout(resolve, 700));
    await checkpointer.close();
    expect(failures).toEqual([]);
    expect(fs.existsSync(sqliteFile(dir))).toBe(false);
  });
});
