import type { Database } from '../db/database.js';
import type { ChunkClaim, ChunkTracker } from './chunk-tracker.js';

/**
 * The embedded profile's tracker: one row per received chunk in SQLite (expired with its session). The
 * profile is one process, so chunk claims live in its memory (and die with it).
 */
export class SqlChunkTracker implements ChunkTracker {
  private readonly claimed = new Set<string>();

  constructor(private readonly db: Database) {}

  async claim(uploadId: string, index: number): Promise<ChunkClaim | { retryAfterSeconds: number }> {
    const key = `${uploadId}:${index}`;
    if (this.claimed.has(key)) return { retryAfterSeconds: 1 };
    this.claimed.add(key);
    return { held: async () => true, release: async () => void this.claimed.delete(key) };
  }

  async mark(uploadId: string, index: number): Promise<void> {
    await this.db.write(null, (db) => db('upload_chunks').insert({ upload_id: uploadId, chunk_index: index }).onConflict().ignore());
  }

  async received(uploadId: string, chunkCount: number): Promise<boolean[]> {
    const rows = await this.db.readPrimary((db) => db('upload_chunks').where({ upload_id: uploadId }).select('chunk_index'));
    const flags = new Array<boolean>(chunkCount).fill(false);
    for (const row of rows as Array<{ chunk_index: number }>) if (row.chunk_index < chunkCount) flags[row.chunk_index] = true;
    return flags;
  }

  async forget(uploadId: string): Promise<void> {
    await this.db.write(null, (db) => db('upload_chunks').where({ upload_id: uploadId }).delete());
  }
}
