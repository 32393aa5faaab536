/**
 * Which chunks of an upload are safely on disk. A chunk is marked only after all its bytes were written,
 * so after a crash a torn chunk is simply reported missing.
 */
export interface ChunkTracker {
  mark(uploadId: string, index: number, ttlSeconds: number): Promise<void>;
  /** One flag per chunk, true when received. */
  received(uploadId: string, chunkCount: number): Promise<boolean[]>;
  forget(uploadId: string): Promise<void>;
}

export function missingChunks(received: boolean[]): number[] {
  const missing: number[] = [];
  received.forEach((got, index) => {
    if (!got) missing.push(index);
  });
  return missing;
}
