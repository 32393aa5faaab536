import { Thread } from '../thread.js';
import { HASH_THREAD_SOURCE } from './hash-thread.js';
import type { LandedBytes } from '../storage/shared-slots.js';
import type { Keeper } from '../storage/staged-file.js';

/**
 * An upload that stopped advancing here (its chunks went to another API node, or its client stalled)
 * lets its kept bytes go, and its hash with them: see releaseAbandoned.
 */
const KEPT_BYTES_MAX_AGE_MS = 60_000;

/** Written bytes kept in memory, waiting for the hash; `chunk` says whose they are. */
interface Waiting {
  bytes: LandedBytes;
  chunk: ChunkRange;
}

/** Bytes [start, end) of one chunk; with `tentative`, hashed before the chunk is received whole. */
interface ChunkRange {
  start: number;
  end: number;
  tentative: boolean;
}

/**
 * Per upload: how far hashing has been asked to go (`scheduled`), how much of that is of chunks received
 * whole (`received`), and written bytes kept in memory beyond that.
 */
interface Progress {
  scheduled: number;
  received: number;
  ahead: Map<number, Waiting>;
  touchedAt: number;
}

/** What a chunk's writes hand their bytes to: the keeper of its slots, and the way to take it back. */
export interface ChunkHashing extends Keeper {
  /** The chunk failed: its kept bytes are let go and what the hash took of them is taken back. */
  abandon(): void;
}

/**
 * SHA-1 of staged upload files, advanced over each file's contiguous received prefix as chunks land,
 * so completion only hashes what is left of the tail. The hashing runs on a worker thread (on the event
 * loop it cost about a fifth of the upload rate). Bytes still in memory after their write are hashed
 * there, without a copy (shared memory); the rest is read back from the file. Reading everything back
 * doubled the disk traffic, and the hash fell behind the upload by half a second per GiB.
 * State is per process; a process that has none (after a restart, on another API node, or after the
 * upload was quiet here for KEPT_BYTES_MAX_AGE_MS) starts again from byte 0, from the file: slower, never
 * wrong. The state here and the thread's are forgotten together, never one without the other.
 */
export class PrefixHashers {
  private readonly thread = new Thread(HASH_THREAD_SOURCE);
  private readonly uploads = new Map<string, Progress>();

  constructor(private readonly keptBytesMaxAgeMs = KEPT_BYTES_MAX_AGE_MS) {}

  /**
   * Lets hashing run ahead up to `contiguousBytes`, the received prefix, in the background (kept bytes
   * from memory, the rest from the file).
   */
  advance(uploadId: string, filePath: string, contiguousBytes: number): void {
    const progress = this.progressOf(uploadId);
    progress.received = Math.max(progress.received, contiguousBytes);
    this.hashUpTo(uploadId, filePath, progress, contiguousBytes);
    this.releaseAbandoned(progress.touchedAt);
  }

  /**
   * Takes the written slots of chunk [start, end) as they land. With `tentative`, the hash runs on
   * through them while the chunk is still arriving, when everything before it is hashed: four chunks
   * in flight otherwise filled the memory budget with bytes the hash could not take yet, writers waited
   * for room and the rest was read back (1 GiB, 5 alternating pairs: median 814 against 765 MiB/s,
   * complete 6–12 ms against 10–31). The hashing thread keeps the hash as it stood at such a chunk's
   * start, so abandon() can take a failed chunk's bytes back. Only uploads with a declared sha1 do this:
   * a mistake here could then only fail their verification (422), never record a wrong SHA-1.
   */
  chunk(uploadId: string, filePath: string, range: ChunkRange): ChunkHashing {
    return {
      distanceTo: (position) => this.distanceTo(uploadId, position),
      take: (bytes) => {
        const progress = this.progressOf(uploadId);
        if (this.wait(progress, bytes, range) && range.tentative) this.hashUpTo(uploadId, filePath, progress, progress.received);
      },
      abandon: () => {
        const progress = this.uploads.get(uploadId);
        if (!progress) return;
        for (const [position, waiting] of progress.ahead) {
          if (waiting.chunk !== range) continue;
          progress.ahead.delete(position);
          waiting.bytes.release();
        }
        if (progress.scheduled > range.start) {
          this.thread.post({ op: 'rollback', uploadId, to: range.start });
          progress.scheduled = range.start;
        }
      },
    };
  }

  /** How far `position` lies ahead of what is already given to the hash (memory keeps the nearest bytes). */
  distanceTo(uploadId: string, position: number): number {
    return position - (this.uploads.get(uploadId)?.scheduled ?? 0);
  }

  /** Takes written slots of a file written in order (a form upload, a tus PATCH): each is hashed as it lands. */
  inOrder(uploadId: string, filePath: string): Keeper {
    return {
      distanceTo: (position) => this.distanceTo(uploadId, position),
      take: (bytes) => {
        const end = bytes.position + bytes.bytes.length;
        this.wait(this.progressOf(uploadId), bytes, { start: bytes.position, end, tentative: false });
        this.advance(uploadId, filePath, end);
      },
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

  /**
   * Asks the thread to hash in order up to `target`: from memory where the bytes are kept, else from the
   * file; then on through kept bytes of tentative chunks, as far as they follow on without a gap.
   */
  private hashUpTo(uploadId: string, filePath: string, progress: Progress, target: number): void {
    while (progress.scheduled < target) {
      const waiting = progress.ahead.get(progress.scheduled);
      if (waiting && waiting.bytes.position + waiting.bytes.bytes.length <= target) {
        this.hashKept(uploadId, filePath, progress, waiting, undefined);
        continue;
      }
      let fileTo = target;
      for (const position of progress.ahead.keys()) if (position > progress.scheduled && position < fileTo) fileTo = position;
      this.thread.post({ op: 'file', uploadId, filePath, to: fileTo });
      progress.scheduled = fileTo;
    }
    for (let waiting = progress.ahead.get(progress.scheduled); waiting?.chunk.tentative; waiting = progress.ahead.get(progress.scheduled)) {
      if (!this.hashKept(uploadId, filePath, progress, waiting, waiting.chunk.start)) break;
    }
    for (const [position, waiting] of progress.ahead) {
      if (position >= progress.scheduled) continue;
      progress.ahead.delete(position);
      waiting.bytes.release();
    }
  }

  /** Queues written bytes of `chunk` for the hash; false (and let go) if the hash is past them or has them. */
  private wait(progress: Progress, bytes: LandedBytes, chunk: ChunkRange): boolean {
    if (bytes.position < progress.scheduled || progress.ahead.has(bytes.position)) {
      bytes.release();
      return false;
    }
    progress.ahead.set(bytes.position, { bytes, chunk });
    return true;
  }

  /** Hands kept bytes at the hash's position to the thread; false if they were evicted meanwhile. */
  private hashKept(uploadId: string, filePath: string, progress: Progress, waiting: Waiting, ofChunk: number | undefined): boolean {
    const kept = waiting.bytes;
    progress.ahead.delete(kept.position);
    // evicted bytes (another slot needed the memory sooner) are read back like any others
    if (!kept.pin()) return false;
    progress.scheduled += kept.bytes.length;
    const { buffer: memory, byteOffset: offset, length } = kept.bytes;
    this.thread
      .request({ op: 'bytes', uploadId, filePath, memory, offset, length, position: kept.position, ofChunk, receivedTo: progress.received })
      .catch(() => undefined)
      .finally(() => kept.release());
    return true;
  }

  private progressOf(uploadId: string): Progress {
    let progress = this.uploads.get(uploadId);
    if (!progress) {
      progress = { scheduled: 0, received: 0, ahead: new Map(), touchedAt: 0 };
      this.uploads.set(uploadId, progress);
    }
    progress.touchedAt = Date.now();
    return progress;
  }

  /**
   * The thread's hash goes with the progress: a stalled chunk may have been hashed tentatively, and once
   * the progress is forgotten, abandon() can no longer take its bytes back (a correct upload then failed
   * its verification for good). Both start again from byte 0, like a process that never saw the upload.
   */
  private releaseAbandoned(now: number): void {
    for (const [uploadId, progress] of this.uploads) {
      if (now - progress.touchedAt >= this.keptBytesMaxAgeMs) this.drop(uploadId);
    }
  }

  private forget(uploadId: string): void {
    for (const waiting of this.uploads.get(uploadId)?.ahead.values() ?? []) waiting.bytes.release();
    this.uploads.delete(uploadId);
  }
}
