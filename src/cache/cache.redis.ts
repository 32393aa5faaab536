import { Redis } from 'ioredis';
import type { Cache } from './cache.js';

// One script, so no other client's attempt slips in between the check and the count
// (KEYS: counter; ARGV: limit, window seconds). Answers {taken 0|1, milliseconds left}.
const TAKE = `if tonumber(redis.call('get', KEYS[1]) or '0') >= tonumber(ARGV[1]) then return {0, redis.call('pttl', KEYS[1])} end
if redis.call('incr', KEYS[1]) == 1 then redis.call('expire', KEYS[1], ARGV[2]) end
return {1, redis.call('pttl', KEYS[1])}`;
// Never below zero, and never a counter without expiry for a window that ended meanwhile (KEYS: counter).
const GIVE_BACK = `if redis.call('exists', KEYS[1]) == 1 and redis.call('decr', KEYS[1]) <= 0 then redis.call('del', KEYS[1]) end
return 0`;

/** The cluster profile's cache: counters shared by every API process through Redis. */
export class RedisCache implements Cache {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {}

  async take(key: string, limit: number, windowSeconds: number) {
    const [taken, ttlMs] = (await this.redis.eval(TAKE, 1, this.prefix + key, limit, windowSeconds)) as [number, number];
    return { taken: taken === 1, retryAfterSeconds: Math.max(1, Math.ceil(ttlMs / 1000)) };
  }

  async giveBack(key: string) {
    await this.redis.eval(GIVE_BACK, 1, this.prefix + key);
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
