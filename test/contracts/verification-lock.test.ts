import { randomUUID } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { LocalVerificationLock, type VerificationLock } from '../../src/upload/verification-lock.js';
import { RedisVerificationLock } from '../../src/upload/verification-lock.redis.js';
import { scratchRedis, servicesAvailable } from '../support/services.js';

const redisUp = await servicesAvailable('verification lock contract (cluster)', ['redis']);

describe.each([
  { name: 'embedded (in process)', enabled: true, open: () => new LocalVerificationLock() },
  { name: 'cluster (Redis)', enabled: redisUp, open: () => new RedisVerificationLock(redis(), prefix()) },
])('verification lock contract: $name', ({ enabled, open }) => {
  it.skipIf(!enabled)('lets one holder verify an upload at a time, and the next one after it lets go', async () => {
    const lock: VerificationLock = open();
    const uploadId = randomUUID();
    const first = await lock.tryAcquire(uploadId);
    expect(first).not.toBeNull();
    expect(await lock.tryAcquire(uploadId)).toBeNull();
    const other = await lock.tryAcquire(randomUUID());
    expect(other).not.toBeNull();
    expect(await first!.held()).toBe(true);
    await first!.release();
    const next = await lock.tryAcquire(uploadId);
    expect(next).not.toBeNull();
    await next!.release();
    await other!.release();
  });
});

describe.skipIf(!redisUp)('verification lock in Redis', () => {
  it('passes to another process one lease after its holder died (stopped renewing it), not before', async () => {
    const uploadId = randomUUID();
    // what a killed holder leaves: its key, renewed no more
    await redis().set(`${prefix()}upload:${uploadId}:verifier`, 'a-killed-process', 'PX', 300);
    const taker = new RedisVerificationLock(redis(), prefix(), 300);
    expect(await taker.tryAcquire(uploadId)).toBeNull();
    await new Promise((resolve) => setTimeout(resolve, 400));
    const taken = await taker.tryAcquire(uploadId);
    expect(taken).not.toBeNull();
    expect(await taken!.held()).toBe(true);
    await taken!.release();
  });
});

// opened on first use: no connection when Redis is absent and the cluster cases skip
let scratch: ReturnType<typeof scratchRedis> | undefined;
const redis = () => (scratch ??= scratchRedis()).redis;
const prefix = () => (scratch ??= scratchRedis()).prefix;
afterAll(async () => {
  await scratch?.close();
});
