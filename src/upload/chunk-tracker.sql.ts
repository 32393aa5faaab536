import type { Database } from '../db/database.js';
import { MAX_FORGOTTEN_REMEMBERED, type ChunkClaim, type ChunkTracker } from './chunk-tracker.js';

/**
 * The embedded profile's tracker: one row per received chunk in SQLite (expired with its session). The
 * profile is one process, so chunk claims live in its memory (and die with it).
 */
export class SqlChunkTracker implements ChunkTracker {
  private readonly claimed = new Set<string>();
  /**
   * Per upload, a prefix known to be received. Marks are only ever added (until forget), and this
   * process is the profile's only writer, so it stays a lower bound: the walk for the next gap starts
   * there and reads only the rows the prefix grew by. Reading every row after each chunk made a 1 GiB
   * upload in 256 KiB chunks cost 2.4 ms of the event loop per chunk, against 1.1 ms for an eighth of it.
   */
  private readonly knownPrefix = new Map<string, number>();
  /** Uploads forgotten lately (the profile's one process sees every forget), oldest first. */
  private readonly forgotten = new Set<string>();

  constructor(private readonly db: Database) {}

  async claim(uploadId: string, index: number): Promise<ChunkClaim | { retryAfterSeconds: number }> {
    const key = `${uploadId}:${index}`;
    if (this.claimed.has(key)) return { retryAfterSeconds: 1 };
    this.claimed.add(key);
    return { held: async () => true, release: async () => void this.claimed.delete(key) };
  }

  async mark(uploadId: string, index: number): Promise<boolean> {
    if (this.forgotten.has(uploadId)) return false;
    await this.db.write(null, (db) => db('upload_chunks').insert({ upload_id: uploadId, chunk_index: index }).onConflict().ignore());
    return true;
  }

  async has(uploadId: string, index: number): Promise<boolean> {
    const row = await this.db.readPrimary((db) => db('upload_chunks').where({ upload_id: uploadId, chunk_index: index }).first('chunk_index'));
    return row !== undefined;
  }

  async receivedPrefix(uploadId: string, chunkCount: number): Promise<number> {
    let prefix = this.knownPrefix.get(uploadId) ?? 0;
    for (;;) {
      const from = prefix;
      const rows = (await this.db.readPrimary((db) =>
        db('upload_chunks').where({ upload_id: uploadId }).andWhere('chunk_index', '>=', from).orderBy('chunk_index').limit(PREFIX_STEP).select('chunk_index'),
      )) as Array<{ chunk_index: number }>;
      for (const row of rows) {
        if (row.chunk_index !== prefix) break;
        prefix += 1;
      }
      // a full step of rows without a gap: the prefix may go on
      if (prefix - from < PREFIX_STEP) break;
    }
    this.knownPrefix.set(uploadId, prefix);
    return Math.min(prefix, chunkCount);
  }

  async received(uploadId: string, chunkCount: number): Promise<boolean[]> {
    const rows = await this.db.readPrimary((db) => db('upload_chunks').where({ upload_id: uploadId }).select('chunk_index'));
    const flags = new Array<boolean>(chunkCount).fill(false);
    for (const row of rows as Array<{ chunk_index: number }>) if (row.chunk_index < chunkCount) flags[row.chunk_index] = true;
    return flags;
  }

  async receivedCount(uploadId: string): Promise<number> {
    const row = await this.db.readPrimary((db) => db('upload_chunks').where({ upload_id: uploadId }).count({ count: '*' }).first());
    return Number(row?.count ?? 0);
  }

  async forget(uploadId: string): Promise<void> {
    this.knownPrefix.delete(uploadId);
    if (this.forgotten.size >= MAX_FORGOTTEN_REMEMBERED) this.forgotten.delete(this.forgotten.values().next().value!);
    this.forgotten.add(uploadId);
    await this.db.write(null, (db) => db('upload_chunks').where({ upload_id: uploadId }).delete());
  }
}

const PREFIX_STEP = 256;
