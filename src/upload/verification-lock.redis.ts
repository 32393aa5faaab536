import type { Redis } from 'ioredis';
import { RedisLease } from './redis-lease.js';
import type { VerificationHold, VerificationLock } from './verification-lock.js';

// How long a verification outlives its process: a complete after a crash answers 202 until then.
const VERIFIER_LEASE_MS = 10_000;

/** The cluster profile's: a lease in Redis, renewed while the holder verifies, shared by every API process. */
export class RedisVerificationLock implements VerificationLock {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly leaseMs = VERIFIER_LEASE_MS,
  ) {}

  tryAcquire(uploadId: string): Promise<VerificationHold | null> {
    return RedisLease.tryAcquire(this.redis, `${this.prefix}upload:${uploadId}:verifier`, this.leaseMs);
  }
}
