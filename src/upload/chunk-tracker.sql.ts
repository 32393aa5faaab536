import type { Database } from '../db/database.js';
import type { ChunkTracker } from './chunk-tracker.js';

/** The embedded profile's tracker: one row per received chunk in SQLite (expired with its session). */
export class SqlChunkTracker implements ChunkTracker {
  constructor(private readonly db: Database) {}

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
