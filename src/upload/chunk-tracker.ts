/**
 * Which chunks of an upload are safely on disk. A chunk is marked only after all its bytes were written,
 * so after a crash a torn chunk is simply reported missing.
 */
export interface ChunkTracker {
  /**
   * Makes this request the one writer of chunk `index` until it releases the claim, or until it dies (a
   * claim outlives a killed process by a few seconds at most); when another request holds the chunk,
   * answers how long to wait.
   */
  claim(uploadId: string, index: number): Promise<ChunkClaim | { retryAfterSeconds: number }>;
  /**
   * Records chunk `index` as received; false, recording nothing, when the upload was forgotten meanwhile
   * (its session cancelled or expired while the chunk was arriving, in any process).
   */
  mark(uploadId: string, index: number, ttlSeconds: number): Promise<boolean>;
  has(uploadId: string, index: number): Promise<boolean>;
  /**
   * How many chunks from index 0 on are received without a gap (the first missing index, or chunkCount).
   * Asked after every chunk, so it must not cost in proportion to the chunk count, as received() does.
   */
  receivedPrefix(uploadId: string, chunkCount: number): Promise<number>;
  /** One flag per chunk, true when received. */
  received(uploadId: string, chunkCount: number): Promise<boolean[]>;
  /** How many chunks are received, counted where they are recorded. */
  receivedCount(uploadId: string): Promise<number>;
  /** Drops what is recorded of the upload; marks that come later record nothing (see mark). */
  forget(uploadId: string): Promise<void>;
}

/** How long, or for how many uploads, a forgotten upload refuses marks: a chunk outlives its session by seconds. */
export const FORGOTTEN_SECONDS = 3600;
export const MAX_FORGOTTEN_REMEMBERED = 10_000;

export interface ChunkClaim {
  /** Whether the claim is still this request's (a process frozen past its lease has lost it). */
  held(): Promise<boolean>;
  release(): Promise<void>;
}

export function missingChunks(received: boolean[]): number[] {
  const missing: number[] = [];
  received.forEach((got, index) => {
    if (!got) missing.push(index);
  });
  return missing;
}
