import { Redis } from 'ioredis';
import type { Cache } from './cache.js';

/** The cluster profile's cache: counters shared by every API process through Redis. */
export class RedisCache implements Cache {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {}

  async hit(key: string, windowSeconds: number) {
    const fullKey = this.prefix + key;
    // SET NX starts the window only once; INCR and PTTL then read it atomically in one round trip.
    const [, [, count], [, ttlMs]] = (await this.redis
      .multi()
      .set(fullKey, 0, 'EX', windowSeconds, 'NX')
      .incr(fullKey)
      .pttl(fullKey)
      .exec()) as [unknown, [unknown, number], [unknown, number]];
    return { count, retryAfterSeconds: Math.max(1, Math.ceil(ttlMs / 1000)) };
  }

  async peek(key: string) {
    const fullKey = this.prefix + key;
    // one command on the common path (no count yet); the time left is asked only for a live count
    const value = await this.redis.get(fullKey);
    if (value === null) return { count: 0, retryAfterSeconds: 0 };
    const ttlMs = await this.redis.pttl(fullKey);
    return { count: Number(value), retryAfterSeconds: Math.max(1, Math.ceil(ttlMs / 1000)) };
  }

  async forget(key: string) {
    await this.redis.del(this.prefix + key);
  }

  async ping() {
    await this.redis.ping();
  }

  async close() {
    this.redis.disconnect();
  }
}
