import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { ERRORS, type Lock, type Locker, type RequestRelease } from '@tus/utils';

const LEASE_MS = 30_000;
const RETRY_MS = 50;
// Deletes or extends the lock only while it still holds our token (another process may own it by now).
const RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";
const EXTEND = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end";

/**
 * A tus Locker shared by every API process through Redis: SET NX with a lease that the holder keeps
 * renewing, released by token. A waiter publishes a release request, and the holder (a stale PATCH on a
 * half-open connection, perhaps in another process) is asked to let go, as @tus/server's MemoryLocker does
 * in one process.
 */
export class RedisLocker implements Locker {
  private readonly held = new Map<string, RequestRelease>();
  private readonly channelPrefix: string;
  private subscribed: Promise<unknown> | null = null;

  constructor(
    readonly redis: Redis,
    private readonly subscriber: Redis,
    readonly prefix: string,
    readonly acquireTimeoutMs = 30_000,
  ) {
    this.channelPrefix = `${prefix}tus-lock-release:`;
    subscriber.on('pmessage', (_pattern, channel: string) => {
      void this.held.get(channel.slice(this.channelPrefix.length))?.();
    });
  }

  newLock(id: string): Lock {
    this.subscribed ??= this.subscriber.psubscribe(`${this.channelPrefix}*`);
    return new RedisLock(this, id);
  }

  hold(id: string, release: RequestRelease): void {
    this.held.set(id, release);
  }

  letGo(id: string): void {
    this.held.delete(id);
  }

  async askToRelease(id: string): Promise<void> {
    await this.subscribed;
    await this.redis.publish(this.channelPrefix + id, 'release');
  }

  async close(): Promise<void> {
    this.subscriber.disconnect();
  }
}

class RedisLock implements Lock {
  private readonly token = randomUUID();
  private renewal: NodeJS.Timeout | null = null;

  constructor(
    private readonly locker: RedisLocker,
    private readonly id: string,
  ) {}

  private get key(): string {
    return `${this.locker.prefix}tus-lock:${this.id}`;
  }

  async lock(signal: AbortSignal, requestRelease: RequestRelease): Promise<void> {
    const deadline = Date.now() + this.locker.acquireTimeoutMs;
    let asked = false;
    while ((await this.locker.redis.set(this.key, this.token, 'PX', LEASE_MS, 'NX')) !== 'OK') {
      if (signal.aborted || Date.now() > deadline) throw ERRORS.ERR_LOCK_TIMEOUT;
      if (!asked) {
        asked = true;
        await this.locker.askToRelease(this.id);
      }
      await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
    }
    this.locker.hold(this.id, requestRelease);
    this.renewal = setInterval(() => {
      this.locker.redis.eval(EXTEND, 1, this.key, this.token, LEASE_MS).catch(() => undefined);
    }, LEASE_MS / 3);
    this.renewal.unref();
  }

  async unlock(): Promise<void> {
    if (this.renewal) clearInterval(this.renewal);
    this.locker.letGo(this.id);
    await this.locker.redis.eval(RELEASE, 1, this.key, this.token);
  }
}
