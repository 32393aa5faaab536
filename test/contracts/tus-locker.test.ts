import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { ERRORS, type Lock } from '@tus/utils';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { RedisLocker } from '../../src/upload/tus-locker.redis.js';
import { MemoryTusLocker, type TusLocker } from '../../src/upload/tus-locker.js';
import { SERVICE_DEFAULTS, servicesAvailable } from '../support/services.js';

interface LockerOptions {
  acquireTimeoutMs?: number;
  /** Redis only: how long a lock outlives its holder's last renewal. */
  leaseMs?: number;
}

interface Opened {
  /** The locker of one API process, and the one of another (the same locker where it lives in one process). */
  here: TusLocker;
  elsewhere: TusLocker;
  /** Redis only: ends the process of `here` as kill -9 would (its connections go, nothing is released). */
  killHere?(): void;
  /** Redis only: drops the connection on which `here` hears release requests; it comes back by itself. */
  dropHereSubscription?(): void;
  close(): Promise<void>;
}

function openMemory({ acquireTimeoutMs = 30_000 }: LockerOptions): Opened {
  const locker = new MemoryTusLocker({ acquireLockTimeout: acquireTimeoutMs });
  return { here: locker, elsewhere: locker, close: async () => {} };
}

function openRedis({ acquireTimeoutMs = 30_000, leaseMs }: LockerOptions): Opened {
  const prefix = `filestore-test-${randomUUID()}:`;
  const processes = [0, 1].map(() => {
    const redis = new Redis(SERVICE_DEFAULTS.REDIS_URL);
    const subscriber = new Redis(SERVICE_DEFAULTS.REDIS_URL);
    return { redis, subscriber, locker: new RedisLocker(redis, subscriber, prefix, acquireTimeoutMs, leaseMs) };
  });
  const [here, elsewhere] = processes as [(typeof processes)[0], (typeof processes)[0]];
  const disconnect = (p: typeof here) => (p.redis.disconnect(), p.subscriber.disconnect());
  return {
    here: here.locker,
    elsewhere: elsewhere.locker,
    killHere: () => disconnect(here),
    dropHereSubscription: () => here.subscriber.disconnect(true),
    close: async () => {
      const keys = await elsewhere.redis.keys(`${prefix}*`);
      if (keys.length > 0) await elsewhere.redis.del(...keys);
      for (const p of processes) disconnect(p);
    },
  };
}

const redisUp = await servicesAvailable('tus locker contract (cluster)', ['redis']);
const adapters = [
  { name: 'embedded (@tus/server MemoryLocker)', open: openMemory, enabled: true },
  { name: 'cluster (Redis, two API processes)', open: openRedis, enabled: redisUp },
];

const never = () => new AbortController().signal;

/** Takes `lock`, noting in `events` when it asks its holder to let go and when it is taken. */
async function take(lock: Lock, events: string[], name: string, options: { signal?: AbortSignal; onRelease?: () => void } = {}) {
  await lock.lock(options.signal ?? never(), () => {
    events.push(`${name} asked to let go`);
    options.onRelease?.();
  });
  events.push(`${name} holds`);
}

for (const adapter of adapters) {
  describe.skipIf(!adapter.enabled)(`tus locker contract: ${adapter.name}`, () => {
    it('makes a PATCH elsewhere wait for the lock, asks the holder to let go, and takes the lock once it is let go', async () => {
      const opened = adapter.open({});
      try {
        const id = randomUUID();
        const events: string[] = [];
        const holder = opened.here.newLock(id);
        let lettingGo: Promise<void> | null = null;
        // a holder may be asked more than once while it finishes; it lets go once
        const letGo = () => void (lettingGo ??= sleep(100).then(() => (events.push('holder lets go'), holder.unlock())));
        await take(holder, events, 'holder', { onRelease: letGo });
        const waiter = opened.elsewhere.newLock(id);
        await take(waiter, events, 'waiter');
        expect(events.filter((event, i) => events.indexOf(event) === i)).toEqual(['holder holds', 'holder asked to let go', 'holder lets go', 'waiter holds']);
        await waiter.unlock();
        // let go for good: the next one takes it at once
        const next = opened.here.newLock(id);
        await take(next, events, 'next');
        await next.unlock();
      } finally {
        await opened.close();
      }
    });

    it('lets locks of different uploads be held at once', async () => {
      const opened = adapter.open({ acquireTimeoutMs: 2000 });
      try {
        const events: string[] = [];
        const first = opened.here.newLock(randomUUID());
        const second = opened.elsewhere.newLock(randomUUID());
        await take(first, events, 'first');
        await take(second, events, 'second');
        expect(events).toEqual(['first holds', 'second holds']);
        await Promise.all([first.unlock(), second.unlock()]);
      } finally {
        await opened.close();
      }
    });

    it('gives up with ERR_LOCK_TIMEOUT when the holder does not let go in time, and at once when the request is aborted', async () => {
      const opened = adapter.open({ acquireTimeoutMs: 400 });
      try {
        const id = randomUUID();
        const holder = opened.here.newLock(id);
        await take(holder, [], 'holder');
        const started = performance.now();
        await expect(opened.elsewhere.newLock(id).lock(never(), () => {})).rejects.toBe(ERRORS.ERR_LOCK_TIMEOUT);
        expect(performance.now() - started).toBeGreaterThanOrEqual(350);

        const longer = adapter.open({ acquireTimeoutMs: 30_000 });
        try {
          const holderLong = longer.here.newLock(id);
          await take(holderLong, [], 'holder');
          const aborted = AbortSignal.timeout(200);
          const abortedAt = performance.now();
          await expect(longer.elsewhere.newLock(id).lock(aborted, () => {})).rejects.toBe(ERRORS.ERR_LOCK_TIMEOUT);
          expect(performance.now() - abortedAt).toBeLessThan(5000);
          await holderLong.unlock();
        } finally {
          await longer.close();
        }

        // the waiters that gave up took nothing: once the holder lets go, the lock is free
        await holder.unlock();
        const after = opened.elsewhere.newLock(id);
        await take(after, [], 'after');
        await after.unlock();
      } finally {
        await opened.close();
      }
    });

    it('takes a free lock at once with lockIfFree, and answers null for a held one without asking its holder to let go', async () => {
      const opened = adapter.open({ acquireTimeoutMs: 300 });
      try {
        const id = randomUUID();
        const events: string[] = [];
        await take(opened.here.newLock(id), events, 'holder');
        expect(await opened.elsewhere.lockIfFree(id)).toBeNull();
        expect(events).toEqual(['holder holds']);

        const free = await opened.elsewhere.lockIfFree(randomUUID());
        expect(free).not.toBeNull();
        await free!.unlock();
        // a lock taken so is a lock like any other: a request waits for it (asking in vain), then takes it
        const sweeping = randomUUID();
        const sweep = (await opened.here.lockIfFree(sweeping))!;
        await expect(opened.elsewhere.newLock(sweeping).lock(never(), () => {})).rejects.toBe(ERRORS.ERR_LOCK_TIMEOUT);
        await sweep.unlock();
        const after = opened.elsewhere.newLock(sweeping);
        await take(after, events, 'after');
        await after.unlock();
      } finally {
        await opened.close();
      }
    });

    it('tells a holder that it still holds its lock until it unlocks, and no one else', async () => {
      const opened = adapter.open({});
      try {
        const id = randomUUID();
        expect(await opened.here.stillHeld(id)).toBe(false);
        const lock = opened.here.newLock(id);
        await take(lock, [], 'holder');
        expect(await opened.here.stillHeld(id)).toBe(true);
        await lock.unlock();
        expect(await opened.here.stillHeld(id)).toBe(false);
      } finally {
        await opened.close();
      }
    });

    // only a Redis lock has a holder in another process, with a connection that can drop and a lease
    if (adapter.open !== openRedis) return;

    it('tells a holder frozen past its lease that it no longer holds the lock, once another process took it', async () => {
      const opened = adapter.open({ leaseMs: 600 });
      try {
        const id = randomUUID();
        await take(opened.here.newLock(id), [], 'holder');
        expect(await opened.elsewhere.stillHeld(id)).toBe(false);
        // the whole thread stops, renewals included, as a paused process's would
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 900);
        const taken = await opened.elsewhere.lockIfFree(id);
        expect(taken).not.toBeNull();
        expect(await opened.here.stillHeld(id)).toBe(false);
        expect(await opened.elsewhere.stillHeld(id)).toBe(false);
        await taken!.unlock();
      } finally {
        await opened.close();
      }
    });

    it('asks again a holder that missed the request to let go while its Redis connection was down', async () => {
      const opened = adapter.open({ acquireTimeoutMs: 15_000 });
      try {
        const id = randomUUID();
        const events: string[] = [];
        const holder = opened.here.newLock(id);
        let lettingGo: Promise<void> | null = null;
        await take(holder, events, 'holder', { onRelease: () => void (lettingGo ??= holder.unlock()) });
        opened.dropHereSubscription!();
        const started = performance.now();
        await take(opened.elsewhere.newLock(id), events, 'waiter');
        expect(events).toEqual(['holder holds', 'holder asked to let go', 'waiter holds']);
        expect(performance.now() - started).toBeLessThan(5000);
      } finally {
        await opened.close();
      }
    });

    it('frees the lock of an API process killed while holding it, one lease later', async () => {
      const opened = adapter.open({ acquireTimeoutMs: 10_000, leaseMs: 600 });
      try {
        const id = randomUUID();
        await take(opened.here.newLock(id), [], 'holder');
        // while it lives the holder renews its lease: past the lease, the lock is still taken
        await sleep(1000);
        await expect(opened.elsewhere.newLock(id).lock(AbortSignal.timeout(300), () => {})).rejects.toBe(ERRORS.ERR_LOCK_TIMEOUT);
        opened.killHere!();
        const killedAt = performance.now();
        const events: string[] = [];
        const waiter = opened.elsewhere.newLock(id);
        await take(waiter, events, 'waiter');
        const waited = performance.now() - killedAt;
        expect(waited).toBeGreaterThanOrEqual(250);
        expect(waited).toBeLessThan(5000);
        await waiter.unlock();
      } finally {
        await opened.close();
      }
    });
  });
}
