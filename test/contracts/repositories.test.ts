import { createHash, randomBytes, randomUUID } from 'node:crypto';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlobsRepository } from '../../src/db/blobs.repository.js';
import { Database, isUniqueViolation } from '../../src/db/database.js';
import { FoldersRepository } from '../../src/db/folders.repository.js';
import { openMysql, openSqlite } from '../../src/db/knex.js';
import { migrateToLatest } from '../../src/db/migrate.js';
import { TokensRepository } from '../../src/db/tokens.repository.js';
import { UserFilesRepository, pathKey, type UserFileRow } from '../../src/db/user-files.repository.js';
import { UploadsRepository, type UploadRow } from '../../src/db/uploads.repository.js';
import { UsersRepository } from '../../src/db/users.repository.js';
import { createScratchDatabase, servicesAvailable } from '../support/services.js';

/** One adapter: a migrated Database and how to throw it away. */
interface Opened {
  db: Database;
  close(): Promise<void>;
}

const logger = pino({ level: 'silent' });

async function openEmbedded(): Promise<Opened> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'filestore-repo-contract-'));
  const sqlite = openSqlite(dir);
  await migrateToLatest(sqlite);
  const db = new Database(sqlite, sqlite, { readYourWritesMs: 0, logger });
  return { db, close: async () => (await db.close(), await fsp.rm(dir, { recursive: true, force: true })) };
}

async function openCluster(): Promise<Opened> {
  const scratch = await createScratchDatabase();
  const primary = openMysql(scratch.primaryUrl, { connectTimeoutMs: 5000, poolMax: 4 });
  const replica = openMysql(scratch.replicaUrl, { connectTimeoutMs: 1500, poolMax: 4 });
  await migrateToLatest(primary);
  // A long read-your-writes window: every read below is by a user who just wrote, as in the app.
  const db = new Database(primary, replica, { readYourWritesMs: 30_000, logger });
  return { db, close: async () => (await db.close(), await scratch.drop()) };
}

const clusterUp = await servicesAvailable('repository contract (cluster)', ['mariadb-pair']);
const adapters = [
  { name: 'embedded (SQLite)', open: openEmbedded, enabled: true },
  { name: 'cluster (MariaDB primary + replica)', open: openCluster, enabled: clusterUp },
];

for (const adapter of adapters) {
  describe.skipIf(!adapter.enabled)(`repository contract: ${adapter.name}`, () => {
    let opened: Opened;
    let db: Database;
    let users: UsersRepository;
    let tokens: TokensRepository;
    let blobs: BlobsRepository;
    let userFiles: UserFilesRepository;
    let folders: FoldersRepository;

    beforeAll(async () => {
      opened = await adapter.open();
      db = opened.db;
      users = new UsersRepository(db);
      tokens = new TokensRepository(db);
      blobs = new BlobsRepository(db);
      userFiles = new UserFilesRepository(db);
      folders = new FoldersRepository(db);
    });
    afterAll(async () => {
      await opened?.close();
    });

    const now = () => Date.now();

    async function newUser(username = `u_${randomBytes(6).toString('hex')}`): Promise<string> {
      const id = randomUUID();
      await users.create({ id, username, password_hash: 'x', created_at: now() });
      return id;
    }

    async function newBlob(size = 10): Promise<number> {
      const sha1 = createHash('sha1').update(randomBytes(16)).digest('hex');
      const t = now();
      return db.transaction(null, (trx) =>
        blobs.insert(trx, { sha1, size, tier: 'local', location: 'x', status: 'available', created_at: t, updated_at: t, verified_at: t }),
      );
    }

    async function addFile(userId: string, folder: string, name: string, size = 10): Promise<string> {
      const fileId = await newBlob(size);
      const id = randomUUID();
      const row: UserFileRow = {
        id, user_id: userId, file_id: fileId, name, folder, size, status: 'available',
        path_key: pathKey(folder, name), live: 1, created_at: now(), updated_at: now(),
      };
      await db.transaction(userId, (trx) => userFiles.insert(trx, row));
      return id;
    }

    async function ensure(userId: string, ...paths: string[]): Promise<void> {
      const chain = paths.map((p) => ({ path: p, parent: p.slice(0, p.lastIndexOf('/')) || '/' }));
      await db.transaction(userId, (trx) => folders.ensure(trx, userId, chain, now()));
    }

    async function rejection(promise: Promise<unknown>): Promise<unknown> {
      return promise.then(() => expect.fail('expected the write to be rejected'), (error: unknown) => error);
    }

    it('finds a created user by username and by id', async () => {
      const username = `find_${randomBytes(4).toString('hex')}`;
      const id = await newUser(username);
      expect(await users.findByUsername(username)).toMatchObject({ id, username });
      expect(await users.findById(id)).toMatchObject({ id, username });
      expect(await users.findByUsername(`${username}_nope`)).toBeUndefined();
    });

    it('rejects a second user with the same username as a unique violation', async () => {
      const username = `dup_${randomBytes(4).toString('hex')}`;
      await newUser(username);
      const error = await rejection(newUser(username));
      expect(isUniqueViolation(error)).toBe(true);
    });

    it('treats usernames that differ only in case as different users', async () => {
      const base = `case_${randomBytes(4).toString('hex')}`;
      const lower = await newUser(base);
      const upper = await newUser(base.toUpperCase());
      expect((await users.findByUsername(base))?.id).toBe(lower);
      expect((await users.findByUsername(base.toUpperCase()))?.id).toBe(upper);
    });

    it('revokes a refresh token once, and a whole family at once', async () => {
      const userId = await newUser();
      const family = randomUUID();
      const ids = [randomUUID(), randomUUID(), randomUUID()];
      for (const id of ids) {
        await tokens.insert({ id, user_id: userId, family, token_hash: 'h'.repeat(64), expires_at: now() + 60_000, revoked_at: null, created_at: now() });
      }
      expect(await tokens.findById(ids[0]!)).toMatchObject({ id: ids[0], family, revoked_at: null });
      expect(await tokens.revokeIfActive(ids[0]!, now())).toBe(true);
      expect(await tokens.revokeIfActive(ids[0]!, now())).toBe(false);
      await tokens.revokeFamily(family, now());
      for (const id of ids) expect((await tokens.findById(id))?.revoked_at).not.toBeNull();
    });

    it('rejects a second content row with the same sha1 as a unique violation', async () => {
      const sha1 = createHash('sha1').update(randomBytes(16)).digest('hex');
      const t = now();
      const blob = { sha1, size: 3, tier: 'local' as const, location: 'a', status: 'pending' as const, created_at: t, updated_at: t, verified_at: null };
      const id = await db.transaction(null, (trx) => blobs.insert(trx, blob));
      const error = await rejection(db.transaction(null, (trx) => blobs.insert(trx, { ...blob, location: 'b' })));
      expect(isUniqueViolation(error)).toBe(true);
      expect(await db.write(null, (knex) => blobs.revive(knex, { ...blob, id }, 's3', 'blobs/x', now()))).toBe(true);
      const found = await db.readPrimary((knex) => blobs.findBySha1(knex, sha1));
      expect(found).toMatchObject({ id, sha1, size: 3, tier: 's3', location: 'blobs/x', status: 'available' });
    });

    it('allows one available file per (user, folder, name) and says so with a unique violation', async () => {
      const userId = await newUser();
      await addFile(userId, '/docs', 'report.txt');
      const error = await rejection(addFile(userId, '/docs', 'report.txt'));
      expect(isUniqueViolation(error)).toBe(true);
      const otherUser = await newUser();
      await addFile(otherUser, '/docs', 'report.txt');
      await addFile(userId, '/other', 'report.txt');
    });

    it('lets a deleted file give its name to a new one, any number of times', async () => {
      const userId = await newUser();
      const first = await addFile(userId, '/', 'cv.pdf');
      expect(await userFiles.softDelete(userId, first, now())).toBe(true);
      expect(await userFiles.softDelete(userId, first, now())).toBe(false);
      const second = await addFile(userId, '/', 'cv.pdf');
      expect(await userFiles.softDelete(userId, second, now())).toBe(true);
      const third = await addFile(userId, '/', 'cv.pdf');
      const found = await db.transaction(userId, (trx) => userFiles.findByPath(trx, userId, '/', 'cv.pdf'));
      expect(found?.id).toBe(third);
      expect((await userFiles.listFolder(userId, '/')).map((f) => f.id)).toEqual([third]);
      expect(await userFiles.findAvailable(userId, first)).toBeUndefined();
    });

    it('keeps names that differ only in case as different files', async () => {
      const userId = await newUser();
      const lower = await addFile(userId, '/', 'a.txt');
      const upper = await addFile(userId, '/', 'A.txt');
      const byPath = (name: string) => db.transaction(userId, (trx) => userFiles.findByPath(trx, userId, '/', name));
      expect((await byPath('a.txt'))?.id).toBe(lower);
      expect((await byPath('A.txt'))?.id).toBe(upper);
      expect((await userFiles.listFolder(userId, '/')).map((f) => f.name).sort()).toEqual(['A.txt', 'a.txt']);
      await ensure(userId, '/Photos', '/photos');
      expect((await folders.listChildren(userId, '/')).map((f) => f.path).sort()).toEqual(['/Photos', '/photos']);
    });

    it('compares names byte-exactly: a trailing space makes a different username, folder and file', async () => {
      const username = `pad_${randomBytes(4).toString('hex')}`;
      await newUser(username);
      expect(await users.findByUsername(`${username} `)).toBeUndefined();
      const userId = await newUser();
      await ensure(userId, '/a', '/a ');
      expect((await folders.listChildren(userId, '/')).map((f) => f.path).sort()).toEqual(['/a', '/a ']);
      const spaced = await addFile(userId, '/a ', 'f');
      expect(await userFiles.listFolder(userId, '/a')).toEqual([]);
      await db.transaction(userId, (trx) => userFiles.softDeleteUnder(trx, userId, '/a', now()));
      expect(await userFiles.findAvailable(userId, spaced)).toBeDefined();
    });

    it('returns a file with its content sha1, tier and location, and renames it', async () => {
      const userId = await newUser();
      const id = await addFile(userId, '/a', 'old.txt', 42);
      expect(await userFiles.findAvailable(userId, id)).toMatchObject({ id, name: 'old.txt', folder: '/a', size: 42, tier: 'local', location: 'x' });
      expect((await userFiles.findAvailable(userId, id))?.sha1).toMatch(/^[0-9a-f]{40}$/);
      expect(await userFiles.findAvailable(await newUser(), id)).toBeUndefined();
      await db.transaction(userId, (trx) => userFiles.rename(trx, userId, id, '/b', 'new.txt', now()));
      expect(await db.transaction(userId, (trx) => userFiles.findByPath(trx, userId, '/b', 'new.txt'))).toMatchObject({ id });
      expect(await db.transaction(userId, (trx) => userFiles.findByPath(trx, userId, '/a', 'old.txt'))).toBeUndefined();
    });

    it('ensures folders idempotently and revives a deleted folder', async () => {
      const userId = await newUser();
      await ensure(userId, '/a', '/a/b');
      await ensure(userId, '/a', '/a/b');
      expect((await folders.listChildren(userId, '/')).map((f) => f.path)).toEqual(['/a']);
      expect((await folders.listChildren(userId, '/a')).map((f) => f.path)).toEqual(['/a/b']);
      expect(await db.transaction(userId, (trx) => folders.softDeleteUnder(trx, userId, '/a'))).toBe(true);
      expect(await folders.exists(userId, '/a')).toBe(false);
      expect(await folders.exists(userId, '/a/b')).toBe(false);
      await ensure(userId, '/a');
      expect(await folders.exists(userId, '/a')).toBe(true);
      expect(await folders.exists(userId, '/a/b')).toBe(false);
      expect(await db.transaction(userId, (trx) => folders.softDeleteUnder(trx, userId, '/nope'))).toBe(false);
    });

    it('soft-deletes a folder and what lies below it, but not a sibling sharing its prefix', async () => {
      const userId = await newUser();
      await ensure(userId, '/a', '/a/b', '/a/b/c', '/ab', '/ab/c');
      const inside = [await addFile(userId, '/a', 'f'), await addFile(userId, '/a/b', 'f'), await addFile(userId, '/a/b/c', 'f')];
      const outside = [await addFile(userId, '/ab', 'f'), await addFile(userId, '/ab/c', 'f'), await addFile(userId, '/', 'a')];
      await db.transaction(userId, async (trx) => {
        await folders.softDeleteUnder(trx, userId, '/a');
        await userFiles.softDeleteUnder(trx, userId, '/a', now());
      });
      for (const p of ['/a', '/a/b', '/a/b/c']) expect(await folders.exists(userId, p)).toBe(false);
      for (const p of ['/ab', '/ab/c']) expect(await folders.exists(userId, p)).toBe(true);
      for (const id of inside) expect(await userFiles.findAvailable(userId, id)).toBeUndefined();
      for (const id of outside) expect(await userFiles.findAvailable(userId, id)).toBeDefined();
      // the deleted files released their names
      await addFile(userId, '/a/b', 'f');
    });

    it('soft-deletes folders whose names hold % and _ literally, not as LIKE wildcards', async () => {
      const userId = await newUser();
      await ensure(userId, '/100%', '/100%/x', '/100%x', '/1000', '/a_b', '/a_b/c', '/aXb', '/aXb/c');
      const kept = [await addFile(userId, '/1000', 'f'), await addFile(userId, '/aXb/c', 'f'), await addFile(userId, '/100%x', 'f')];
      const gone = [await addFile(userId, '/100%/x', 'f'), await addFile(userId, '/a_b/c', 'f')];
      await db.transaction(userId, async (trx) => {
        for (const p of ['/100%', '/a_b']) {
          expect(await folders.softDeleteUnder(trx, userId, p)).toBe(true);
          await userFiles.softDeleteUnder(trx, userId, p, now());
        }
      });
      const remaining = [...(await folders.listChildren(userId, '/')), ...(await folders.listChildren(userId, '/aXb'))];
      expect(remaining.map((f) => f.path).sort()).toEqual(['/1000', '/100%x', '/aXb', '/aXb/c'].sort());
      for (const id of kept) expect(await userFiles.findAvailable(userId, id)).toBeDefined();
      for (const id of gone) expect(await userFiles.findAvailable(userId, id)).toBeUndefined();
    });

    it('sums used bytes over the user’s available files only', async () => {
      const userId = await newUser();
      expect(await userFiles.usedBytes(userId)).toBe(0);
      await addFile(userId, '/', 'a', 1000);
      await addFile(userId, '/x', 'b', 5_000_000_000);
      const deleted = await addFile(userId, '/', 'c', 7);
      await userFiles.softDelete(userId, deleted, now());
      await addFile(await newUser(), '/', 'a', 99);
      expect(await userFiles.usedBytes(userId)).toBe(5_000_001_000);
    });

    it('finds an upload session with the stored content of its sha1 in one query, and no content for an unknown sha1', async () => {
      const uploads = new UploadsRepository(db);
      const userId = await newUser();
      const contentId = await newBlob(2048);
      const stored = await db.readPrimary((knex) => knex('files').where({ id: contentId }).first());
      const t = now();
      const session = (id: string, sha1: string | null): UploadRow => ({
        id, user_id: userId, name: 'a.bin', folder: '/', size: 2048, sha1, verified_sha1: null, chunk_size: 1024, chunk_count: 2, mode: 'proof',
        state: 'receiving', file_id: null, answered: 0, error_code: null, challenge_nonce: 'ab', challenge_ranges: '[]',
        challenge_expires_at: t + 1000, created_at: t, updated_at: t, expires_at: t + 60_000,
      });
      const [known, unknown, undeclared] = [randomUUID(), randomUUID(), randomUUID()];
      await uploads.insert(session(known, stored.sha1));
      await uploads.insert(session(unknown, 'f'.repeat(40)));
      await uploads.insert(session(undeclared, null));

      const found = await uploads.findWithContent(userId, known);
      expect(found?.session).toEqual(await uploads.find(userId, known));
      expect(found?.content).toMatchObject({ id: contentId, sha1: stored.sha1, size: 2048, tier: 'local', location: 'x', status: 'available' });
      for (const id of [unknown, undeclared]) {
        const alone = await uploads.findWithContent(userId, id);
        expect(alone?.session).toEqual(await uploads.find(userId, id));
        expect(alone?.content).toBeUndefined();
      }
      expect(await uploads.findWithContent(await newUser(), known)).toBeUndefined();
    });

    it('round-trips non-ASCII and 4-byte UTF-8 (emoji) names, usernames and folders', async () => {
      const username = `Zoë_😀_${randomBytes(3).toString('hex')}`;
      const userId = await newUser(username);
      expect((await users.findByUsername(username))?.id).toBe(userId);
      const folder = '/фото/😀 holiday';
      const names = ['Ünïcødé 文件.txt', '🎉🚀.bin', 'e\u0301.txt', 'é.txt'];
      await ensure(userId, '/фото', folder);
      for (const name of names) await addFile(userId, folder, name);
      const listed = (await userFiles.listFolder(userId, folder)).map((f) => f.name);
      expect(listed.sort()).toEqual([...names].sort());
      for (const name of names) {
        const found = await db.transaction(userId, (trx) => userFiles.findByPath(trx, userId, folder, name));
        expect(found?.name).toBe(name);
        expect(found?.folder).toBe(folder);
      }
      expect((await folders.listChildren(userId, '/фото')).map((f) => f.path)).toEqual([folder]);
      await ensure(userId, '/😀', '/😀/x', '/😀x');
      await db.transaction(userId, async (trx) => {
        await folders.softDeleteUnder(trx, userId, '/😀');
        await userFiles.softDeleteUnder(trx, userId, '/😀', now());
      });
      expect(await folders.exists(userId, '/😀/x')).toBe(false);
      expect(await folders.exists(userId, '/😀x')).toBe(true);
      expect(await folders.exists(userId, folder)).toBe(true);
    });
  });
}
