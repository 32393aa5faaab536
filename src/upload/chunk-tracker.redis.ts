import type { Redis } from 'ioredis';
import { FORGOTTEN_SECONDS, type ChunkClaim, type ChunkTracker } from './chunk-tracker.js';
import { RedisLease } from './redis-lease.js';

// A claim lives this long past its holder's last renewal: a killed holder blocks its chunk that long.
const CLAIM_LEASE_MS = 6000;
// Sets the chunk's bit unless the upload was forgotten (KEYS: bitmap, tombstone; ARGV: index, ttl).
const MARK = `if redis.call('exists', KEYS[2]) == 1 then return 0 end
redis.call('setbit', KEYS[1], ARGV[1], 1)
redis.call('expire', KEYS[1], ARGV[2])
return 1`;

/**
 * The cluster profile's tracker: one Redis bitmap per upload (SETBIT/BITCOUNT/GETRANGE/BITPOS), expiring with the
 * session. Chunk claims are SET NX keys with a lease the holder renews, so API processes never write one
 * chunk at once.
 */
export class RedisChunkTracker implements ChunkTracker {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly claimLeaseMs = CLAIM_LEASE_MS,
  ) {}

  async claim(uploadId: string, index: number): Promise<ChunkClaim | { retryAfterSeconds: number }> {
    const key = `${this.key(uploadId)}:${index}:writer`;
    const lease = await RedisLease.tryAcquire(this.redis, key, this.claimLeaseMs);
    return lease ?? { retryAfterSeconds: Math.max(1, Math.ceil((await this.redis.pttl(key)) / 1000)) };
  }

  async mark(uploadId: string, index: number, ttlSeconds: number): Promise<boolean> {
    return (await this.redis.eval(MARK, 2, this.key(uploadId), this.forgottenKey(uploadId), index, ttlSeconds)) === 1;
  }

  async has(uploadId: string, index: number): Promise<boolean> {
    return (await this.redis.getbit(this.key(uploadId), index)) === 1;
  }

  async receivedPrefix(uploadId: string, chunkCount: number): Promise<number> {
    // BITPOS scans the bitmap's bytes in Redis; past the last set byte it answers the bitmap's end
    return Math.min(await this.redis.bitpos(this.key(uploadId), 0), chunkCount);
  }

  async received(uploadId: string, chunkCount: number): Promise<boolean[]> {
    const bitmap = await this.redis.getrangeBuffer(this.key(uploadId), 0, Math.ceil(chunkCount / 8) - 1);
    // Redis numbers bits from the most significant bit of the first byte.
    return Array.from({ length: chunkCount }, (_, i) => ((bitmap[i >> 3] ?? 0) & (0x80 >> (i & 7))) !== 0);
  }

  async receivedCount(uploadId: string): Promise<number> {
    return this.redis.bitcount(this.key(uploadId));
  }

  async forget(uploadId: string): Promise<void> {
    await this.redis.multi().set(this.forgottenKey(uploadId), '1', 'EX', FORGOTTEN_SECONDS).del(this.key(uploadId)).exec();
  }

  private key(uploadId: string): string {
    return `${this.prefix}upload:${uploadId}:chunks`;
  }

  private forgottenKey(uploadId: string): string {
    return `${this.prefix}upload:${uploadId}:forgotten`;
  }
}
