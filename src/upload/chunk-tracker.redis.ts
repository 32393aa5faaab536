import type { Redis } from 'ioredis';
import type { ChunkTracker } from './chunk-tracker.js';

/** The cluster profile's tracker: one Redis bitmap per upload (SETBIT/GETRANGE), expiring with the session. */
export class RedisChunkTracker implements ChunkTracker {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {}

  async mark(uploadId: string, index: number, ttlSeconds: number): Promise<void> {
    const key = this.key(uploadId);
    await this.redis.multi().setbit(key, index, 1).expire(key, ttlSeconds).exec();
  }

  async received(uploadId: string, chunkCount: number): Promise<boolean[]> {
    const bitmap = await this.redis.getrangeBuffer(this.key(uploadId), 0, Math.ceil(chunkCount / 8) - 1);
    // Redis numbers bits from the most significant bit of the first byte.
    return Array.from({ length: chunkCount }, (_, i) => ((bitmap[i >> 3] ?? 0) & (0x80 >> (i & 7))) !== 0);
  }

  async forget(uploadId: string): Promise<void> {
    await this.redis.del(this.key(uploadId));
  }

  private key(uploadId: string): string {
    return `${this.prefix}upload:${uploadId}:chunks`;
  }
}
