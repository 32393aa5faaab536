import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Cache } from '../../src/cache/cache.js';
import { MemoryCache } from '../../src/cache/cache.memory.js';
import { RedisCache } from '../../src/cache/cache.redis.js';
import { scratchRedis, servicesAvailable } from '../support/services.js';

async function openCluster(): Promise<{ cache: Cache; close(): Promise<void> }> {
  const { redis, prefix, close } = scratchRedis();
  return { cache: new RedisCache(redis, prefix), close };
}

const redisUp = await servicesAvailable('cache contract (cluster)', ['redis']);
const adapters = [
  { name: 'embedded (memory)', open: async () => ({ cache: new MemoryCache() as Cache, close: async () => {} }), enabled: true },
  { name: 'cluster (Redis)', open: openCluster, enabled: redisUp },
];

for (const adapter of adapters) {
  describe.skipIf(!adapter.enabled)(`cache contract: ${adapter.name}`, () => {
    let opened: Awaited<ReturnType<typeof adapter.open>>;
    beforeAll(async () => {
      opened = await adapter.open();
    });
    afterAll(async () => {
      await opened.close();
    });
    const cache = () => opened.cache;

    it('lets exactly `limit` of many takes at once through, and says how long the window still runs', async () => {
      const key = randomUUID();
      const answers = await Promise.all(Array.from({ length: 12 }, () => cache().take(key, 5, 3600)));
      expect(answers.filter((answer) => answer.taken)).toHaveLength(5);
      for (const answer of answers) expect(answer.retryAfterSeconds).toBeGreaterThan(3590);
      // exactly 5 counted: a limit of 6 lets one more through, and no second one
      expect((await cache().take(key, 6, 3600)).taken).toBe(true);
      expect((await cache().take(key, 6, 3600)).taken).toBe(false);
    });

    it('takes one more after an attempt is handed back, and no more than that', async () => {
      const key = randomUUID();
      for (let n = 0; n < 3; n++) expect((await cache().take(key, 3, 3600)).taken).toBe(true);
      expect((await cache().take(key, 3, 3600)).taken).toBe(false);
      await cache().giveBack(key);
      expect((await cache().take(key, 3, 3600)).taken).toBe(true);
      expect((await cache().take(key, 3, 3600)).taken).toBe(false);
    });

    it('ends the window when its last attempt is handed back, and never counts below zero', async () => {
      const key = randomUUID();
      await cache().take(key, 5, 3600);
      await cache().giveBack(key);
      await cache().giveBack(key);
      // a new window (60 s, not what is left of the hour) that holds exactly one: the count never went below zero
      expect((await cache().take(key, 1, 60)).retryAfterSeconds).toBeLessThanOrEqual(60);
      expect((await cache().take(key, 1, 60)).taken).toBe(false);
    });

    it('starts a new window once the old one has run out', async () => {
      const key = randomUUID();
      expect((await cache().take(key, 1, 1)).taken).toBe(true);
      expect((await cache().take(key, 1, 1)).taken).toBe(false);
      await new Promise((resolve) => setTimeout(resolve, 1100));
      expect((await cache().take(key, 1, 1)).taken).toBe(true);
    });
  });
}
