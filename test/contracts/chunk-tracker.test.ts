import { randomUUID } from 'node:crypto';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Database } from '../../src/db/database.js';
import { openSqlite } from '../../src/db/knex.js';
import { migrateToLatest } from '../../src/db/migrate.js';
import type { ChunkClaim, ChunkTracker } from '../../src/upload/chunk-tracker.js';
import { RedisChunkTracker } from '../../src/upload/chunk-tracker.redis.js';
import { SqlChunkTracker } from '../../src/upload/chunk-tracker.sql.js';
import { scratchRedis, servicesAvailable } from '../support/services.js';

interface Opened {
  tracker: ChunkTracker;
  /** Redis only: a claim of another process, as it stands in Redis, that stops being renewed. */
  claimElsewhere?(uploadId: string, index: number, leaseMs: number): Promise<void>;
  /** Redis only: the same tracker with claims leased for `leaseMs`. */
  withLease?(leaseMs: number): ChunkTracker;
  close(): Promise<void>;
}

async function openEmbedded(): Promise<Opened> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'filestore-tracker-contract-'));
  const sqlite = openSqlite(dir);
  await migrateToLatest(sqlite);
  const db = new Database(sqlite, sqlite, { readYourWritesMs: 0, logger: pino({ level: 'silent' }) });
  return { tracker: new SqlChunkTracker(db), close: async () => (await db.close(), await fsp.rm(dir, { recursive: true, force: true })) };
}

async function openCluster(): Promise<Opened> {
  const { redis, prefix, close } = scratchRedis();
  return {
    tracker: new RedisChunkTracker(redis, prefix),
    withLease: (leaseMs) => new RedisChunkTracker(redis, prefix, leaseMs),
    claimElsewhere: async (uploadId, index, leaseMs) => void (await redis.set(`${prefix}upload:${uploadId}:chunks:${index}:writer`, 'another-process', 'PX', leaseMs)),
    close,
  };
}

const redisUp = await servicesAvailable('chunk tracker contract (cluster)', ['redis']);
const adapters = [
  // claims in memory die with their process; only Redis claims must expire on their own
  { name: 'embedded (SQLite, claims in memory)', open: openEmbedded, enabled: true, leases: false },
  { name: 'cluster (Redis)', open: openCluster, enabled: redisUp, leases: true },
];

const isClaim = (answer: ChunkClaim | { retryAfterSeconds: number }): answer is ChunkClaim => 'release' in answer;

for (const adapter of adapters) {
  describe.skipIf(!adapter.enabled)(`chunk tracker contract: ${adapter.name}`, () => {
    let opened: Opened;
    beforeAll(async () => {
      opened = await adapter.open();
    });
    afterAll(async () => {
      await opened?.close();
    });

    it('lets one writer claim a chunk at a time, tells the next one to retry, and frees the chunk on release', async () => {
      const uploadId = randomUUID();
      const first = await opened.tracker.claim(uploadId, 3);
      expect(isClaim(first)).toBe(true);

      const second = await opened.tracker.claim(uploadId, 3);
      expect(second).toEqual({ retryAfterSeconds: expect.any(Number) });
      expect((second as { retryAfterSeconds: number }).retryAfterSeconds).toBeGreaterThanOrEqual(1);
      expect(isClaim(await opened.tracker.claim(uploadId, 4))).toBe(true);

      expect(await (first as ChunkClaim).held()).toBe(true);
      await (first as ChunkClaim).release();
      expect(isClaim(await opened.tracker.claim(uploadId, 3))).toBe(true);
    });

    it('tells which chunks are received, one at a time, as flags and as a count, and forgets them all', async () => {
      const uploadId = randomUUID();
      expect(await opened.tracker.receivedCount(uploadId)).toBe(0);
      for (const index of [0, 2, 9, 2]) await opened.tracker.mark(uploadId, index, 60);
      expect(await opened.tracker.receivedCount(uploadId)).toBe(3);

      expect(await opened.tracker.has(uploadId, 2)).toBe(true);
      expect(await opened.tracker.has(uploadId, 1)).toBe(false);
      expect(await opened.tracker.received(uploadId, 10)).toEqual([true, false, true, false, false, false, false, false, false, true]);

      await opened.tracker.forget(uploadId);
      expect(await opened.tracker.has(uploadId, 2)).toBe(false);
      expect(await opened.tracker.receivedPrefix(uploadId, 10)).toBe(0);
      expect(await opened.tracker.receivedCount(uploadId)).toBe(0);
    });

    it('records nothing for an upload forgotten meanwhile (a chunk that outlived its session): mark answers false', async () => {
      const uploadId = randomUUID();
      expect(await opened.tracker.mark(uploadId, 0, 60)).toBe(true);
      await opened.tracker.forget(uploadId);
      expect(await opened.tracker.mark(uploadId, 1, 60)).toBe(false);
      expect(await opened.tracker.received(uploadId, 3)).toEqual([false, false, false]);
      expect(await opened.tracker.receivedPrefix(uploadId, 3)).toBe(0);
      // other uploads are not affected
      expect(await opened.tracker.mark(randomUUID(), 0, 60)).toBe(true);
    });

    it('counts the chunks received from index 0 up to the first gap, as the gaps fill in any order', async () => {
      const uploadId = randomUUID();
      const chunkCount = 700; // longer than one step of the embedded walk (256 rows)
      expect(await opened.tracker.receivedPrefix(uploadId, chunkCount)).toBe(0);
      for (let index = 1; index < chunkCount; index += 1) if (index !== 600) await opened.tracker.mark(uploadId, index, 60);
      expect(await opened.tracker.receivedPrefix(uploadId, chunkCount)).toBe(0);

      await opened.tracker.mark(uploadId, 0, 60);
      expect(await opened.tracker.receivedPrefix(uploadId, chunkCount)).toBe(600);
      await opened.tracker.mark(uploadId, 600, 60);
      expect(await opened.tracker.receivedPrefix(uploadId, chunkCount)).toBe(chunkCount);
      // a count that is not whole bytes of a bitmap: nothing past the last chunk counts
      const short = randomUUID();
      for (let index = 0; index < 5; index += 1) await opened.tracker.mark(short, index, 60);
      expect(await opened.tracker.receivedPrefix(short, 5)).toBe(5);
    });

    if (!adapter.leases) return;
    it('frees a chunk whose claim stopped being renewed (a killed process) once its lease ends', async () => {
      const uploadId = randomUUID();
      await opened.claimElsewhere!(uploadId, 0, 1500);
      expect(isClaim(await opened.tracker.claim(uploadId, 0))).toBe(false);

      await new Promise((resolve) => setTimeout(resolve, 1700));
      expect(isClaim(await opened.tracker.claim(uploadId, 0))).toBe(true);
    });

    it('tells a holder that its claim is gone once another process took the chunk (a holder frozen past its lease)', async () => {
      const uploadId = randomUUID();
      const claim = await opened.withLease!(600).claim(uploadId, 1);
      expect(isClaim(claim)).toBe(true);
      expect(await (claim as ChunkClaim).held()).toBe(true);

      await opened.claimElsewhere!(uploadId, 1, 5000);
      await new Promise((resolve) => setTimeout(resolve, 400));
      expect(await (claim as ChunkClaim).held()).toBe(false);
      await (claim as ChunkClaim).release();
      // releasing a lost claim leaves the new holder's claim alone
      expect(isClaim(await opened.tracker.claim(uploadId, 1))).toBe(false);
    });
  });
}
