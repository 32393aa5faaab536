import type { Redis } from 'ioredis';
import { ERRORS, type Lock, type Locker, type RequestRelease } from '@tus/utils';
import { RedisLease } from './redis-lease.js';

const LEASE_MS = 30_000;
const RETRY_MS = 50;

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
  private lease: RedisLease | null = null;

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
    while (!(this.lease = await RedisLease.tryAcquire(this.locker.redis, this.key, LEASE_MS))) {
      if (signal.aborted || Date.now() > deadline) throw ERRORS.ERR_LOCK_TIMEOUT;
      if (!asked) {
        asked = true;
        await this.locker.askToRelease(this.id);
      }
      await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
    }
    this.locker.hold(this.id, requestRelease);
  }

  async unlock(): Promise<void> {
    this.locker.letGo(this.id);
    await this.lease?.release();
  }
}
