import type { Redis } from 'ioredis';
import { ERRORS, type Lock, type RequestRelease } from '@tus/utils';
import { RedisLease } from './redis-lease.js';
import type { TusLocker } from './tus-locker.js';

// How long a lock outlives its holder's last renewal (renewed every third of it): a client resuming
// after its API process was killed -9 waits this long at most (4-6 s). It lapses under a live holder
// only if the holder's event loop stalls for over 4 s (hashing runs on threads; a GC pause is
// milliseconds), or two renewals in a row fail (one that times out after REDIS_TIMEOUT_SECONDS is made
// good by the next, 2 s later). The chunk claims' lease, for the same reasons.
const LEASE_MS = 6000;
const RETRY_MS = 50;
// A release request is a message: one the holder missed (its subscription was being renewed after a
// reconnect) is sent again, rather than the waiter sitting out the whole acquire timeout.
const ASK_AGAIN_MS = 1000;

/**
 * A tus Locker shared by every API process through Redis: SET NX with a lease that the holder keeps
 * renewing, released by token. A waiter publishes a release request, and the holder (a stale PATCH on a
 * half-open connection, perhaps in another process) is asked to let go, as @tus/server's MemoryLocker does
 * in one process.
 */
export class RedisLocker implements TusLocker {
  /** The locks requests of this process hold: how each is asked to let go, and its lease. */
  private readonly held = new Map<string, { release: RequestRelease; lease: RedisLease }>();
  private readonly channelPrefix: string;
  private subscribed: Promise<unknown> | null = null;

  constructor(
    readonly redis: Redis,
    private readonly subscriber: Redis,
    readonly prefix: string,
    readonly acquireTimeoutMs = 30_000,
    readonly leaseMs = LEASE_MS,
  ) {
    this.channelPrefix = `${prefix}tus-lock-release:`;
    subscriber.on('pmessage', (_pattern, channel: string) => {
      void this.held.get(channel.slice(this.channelPrefix.length))?.release();
    });
  }

  newLock(id: string): Lock {
    return new RedisLock(this, id);
  }

  async lockIfFree(id: string): Promise<Lock | null> {
    const lock = new RedisLock(this, id);
    return (await lock.lockIfFree()) ? lock : null;
  }

  /** Resolves once this process hears release requests (a holder must, from the moment it holds). */
  listening(): Promise<unknown> {
    this.subscribed ??= this.subscriber.psubscribe(`${this.channelPrefix}*`).catch((error: unknown) => {
      this.subscribed = null;
      throw error;
    });
    return this.subscribed;
  }

  hold(id: string, release: RequestRelease, lease: RedisLease): void {
    this.held.set(id, { release, lease });
  }

  async stillHeld(id: string): Promise<boolean> {
    return (await this.held.get(id)?.lease.held()) ?? false;
  }

  letGo(id: string): void {
    this.held.delete(id);
  }

  async askToRelease(id: string): Promise<void> {
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
    await this.locker.listening();
    const deadline = Date.now() + this.locker.acquireTimeoutMs;
    let askedAt = Number.NEGATIVE_INFINITY;
    while (!(this.lease = await RedisLease.tryAcquire(this.locker.redis, this.key, this.locker.leaseMs))) {
      if (signal.aborted || Date.now() > deadline) throw ERRORS.ERR_LOCK_TIMEOUT;
      if (Date.now() - askedAt >= ASK_AGAIN_MS) {
        askedAt = Date.now();
        await this.locker.askToRelease(this.id);
      }
      await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
    }
    this.locker.hold(this.id, requestRelease, this.lease);
  }

  /** One try, holding no release handler: a request asking meanwhile waits until this one is done. */
  async lockIfFree(): Promise<boolean> {
    this.lease = await RedisLease.tryAcquire(this.locker.redis, this.key, this.locker.leaseMs);
    return this.lease !== null;
  }

  async unlock(): Promise<void> {
    this.locker.letGo(this.id);
    await this.lease?.release();
  }
}
