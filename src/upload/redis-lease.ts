import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';

// Deletes or extends the key only while it still holds our token (another process may own it by now).
const RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";
const EXTEND = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end";

/**
 * A Redis key held by one process: SET NX with a lease the holder renews every third of it, released by
 * token. A holder that dies (or freezes) loses the key one lease after its last renewal.
 */
export class RedisLease {
  private confirmedAt = Date.now();
  private lost = false;
  private readonly renewal: NodeJS.Timeout;

  private constructor(
    private readonly redis: Redis,
    private readonly key: string,
    private readonly token: string,
    private readonly leaseMs: number,
  ) {
    this.renewal = setInterval(() => void this.extend().catch(() => undefined), leaseMs / 3);
    this.renewal.unref();
  }

  /** The lease on `key`, or null while another holder has it. */
  static async tryAcquire(redis: Redis, key: string, leaseMs: number): Promise<RedisLease | null> {
    const token = randomUUID();
    if ((await redis.set(key, token, 'PX', leaseMs, 'NX')) !== 'OK') return null;
    return new RedisLease(redis, key, token, leaseMs);
  }

  /** Whether the key is still ours: renewed recently, or (say, after a freeze) as Redis says. */
  async held(): Promise<boolean> {
    return !this.lost && (Date.now() - this.confirmedAt < this.leaseMs / 2 || (await this.extend()));
  }

  async release(): Promise<void> {
    clearInterval(this.renewal);
    await this.redis.eval(RELEASE, 1, this.key, this.token);
  }

  private async extend(): Promise<boolean> {
    if ((await this.redis.eval(EXTEND, 1, this.key, this.token, this.leaseMs)) === 1) this.confirmedAt = Date.now();
    else this.lost = true;
    return !this.lost;
  }
}
