import { Thread } from '../thread.js';
import { HASH_THREAD_SOURCE } from './hash-thread.js';
import type { LandedBytes } from '../storage/shared-slots.js';
import type { Keeper } from '../storage/staged-file.js';

/** An upload that stopped advancing here (its chunks went to another API node) lets its kept bytes go. */
const KEPT_BYTES_MAX_AGE_MS = 60_000;

/** Per upload: how far hashing has been asked to go, and written bytes kept in memory beyond that. */
interface Progress {
  scheduled: number;
  ahead: Map<number, LandedBytes>;
  touchedAt: number;
}

/**
 * SHA-1 of staged upload files, advanced over each file's contiguous received prefix as chunks land,
 * so completion only hashes what is left of the tail. The hashing runs on a worker thread (on the event
 * loop it cost about a fifth of the upload rate). Bytes still in memory after their write are hashed
 * there, without a copy (shared memory); the rest is read back from the file. Reading everything back
 * doubled the disk traffic, and the hash fell behind the upload by half a second per GiB.
 * State is per process; a process that has none (after a restart, or on another API node) starts
 * again from byte 0, from the file: slower, never wrong.
 */
export class PrefixHashers {
  private readonly thread = new Thread(HASH_THREAD_SOURCE);
  private readonly uploads = new Map<string, Progress>();

  /**
   * Lets hashing run ahead up to `contiguousBytes` in the background. `landed` are bytes of the chunk
   * just received that are still in memory; they are released once hashed, or once they cannot be.
   */
  advance(uploadId: string, filePath: string, contiguousBytes: number, landed: LandedBytes[] = []): void {
    const progress = this.progressOf(uploadId);
    for (const bytes of landed) {
      if (bytes.position < progress.scheduled || progress.ahead.has(bytes.position)) bytes.release();
      else progress.ahead.set(bytes.position, bytes);
    }
    this.hashUpTo(uploadId, filePath, progress, contiguousBytes);
    this.releaseAbandoned(progress.touchedAt);
  }

  /** How far `position` lies ahead of what is already given to the hash (memory keeps the nearest bytes). */
  distanceTo(uploadId: string, position: number): number {
    return position - (this.uploads.get(uploadId)?.scheduled ?? 0);
  }

  /** Takes written slots of a file written in order (a form upload, a tus PATCH): each is hashed as it lands. */
  inOrder(uploadId: string, filePath: string): Keeper {
    return {
      distanceTo: (position) => this.distanceTo(uploadId, position),
      take: (bytes) => this.advance(uploadId, filePath, bytes.position + bytes.bytes.length, [bytes]),
    };
  }

  /** Hashes the rest of a complete file of `size` bytes, flushes it to disk, and returns the hex SHA-1. */
  async finish(uploadId: string, filePath: string, size: number): Promise<string> {
    this.hashUpTo(uploadId, filePath, this.progressOf(uploadId), size);
    try {
      return await this.thread.request<string>({ op: 'finish', uploadId, filePath, to: size });
    } finally {
      this.forget(uploadId);
    }
  }

  drop(uploadId: string): void {
    this.forget(uploadId);
    this.thread.postIfRunning({ op: 'drop', uploadId });
  }

  async close(): Promise<void> {
    for (const uploadId of [...this.uploads.keys()]) this.forget(uploadId);
    await this.thread.close();
  }

  /** Asks the thread to hash in order up to `target`: from memory where the bytes are kept, else from the file. */
  private hashUpTo(uploadId: string, filePath: string, progress: Progress, target: number): void {
    while (progress.scheduled < target) {
      const kept = progress.ahead.get(progress.scheduled);
      if (kept && kept.position + kept.bytes.length <= target) {
        progress.ahead.delete(kept.position);
        // evicted bytes (another slot needed the memory sooner) are read back like any others
        if (!kept.pin()) continue;
        progress.scheduled += kept.bytes.length;
        const { buffer: memory, byteOffset: offset, length } = kept.bytes;
        this.thread
          .request({ op: 'bytes', uploadId, filePath, memory, offset, length, position: kept.position })
          .catch(() => undefined)
          .finally(() => kept.release());
        continue;
      }
      let fileTo = target;
      for (const position of progress.ahead.keys()) if (position > progress.scheduled && position < fileTo) fileTo = position;
      this.thread.post({ op: 'file', uploadId, filePath, to: fileTo });
      progress.scheduled = fileTo;
    }
    for (const [position, kept] of progress.ahead) {
      if (position >= progress.scheduled) continue;
      progress.ahead.delete(position);
      kept.release();
    }
  }

  private progressOf(uploadId: string): Progress {
    let progress = this.uploads.get(uploadId);
    if (!progress) {
      progress = { scheduled: 0, ahead: new Map(), touchedAt: 0 };
      this.uploads.set(uploadId, progress);
    }
    progress.touchedAt = Date.now();
    return progress;
  }

  private releaseAbandoned(now: number): void {
    for (const [uploadId, progress] of this.uploads) {
      if (now - progress.touchedAt >= KEPT_BYTES_MAX_AGE_MS) this.forget(uploadId);
    }
  }

  private forget(uploadId: string): void {
    for (const kept of this.uploads.get(uploadId)?.ahead.values() ?? []) kept.release();
    this.uploads.delete(uploadId);
  }
}
