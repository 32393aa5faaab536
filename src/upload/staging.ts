import { createHash } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { AppError } from '../errors.js';
import { eachPiece } from '../storage/each-piece.js';
import { StagedFile, type Keeper } from '../storage/staged-file.js';

export interface ChunkWriteOptions {
  expectedSha1?: string;
  alreadyReceived?: boolean;
  beforeWrite?: () => Promise<void>;
  /** Takes each written slot as it lands (the hash: PrefixHashers.chunk). */
  keeper: Keeper;
}

/**
 * The one pre-sized file an upload's chunks are written into at their offsets (positional writes), so
 * no merge step ever rewrites the bytes. It lives beside the blobs, so completing is a rename.
 */
export class UploadStaging {
  private readonly dir: string;

  constructor(dataDir: string) {
    this.dir = path.join(dataDir, 'uploads');
  }

  pathOf(uploadId: string): string {
    return path.join(this.dir, `${uploadId}.part`);
  }

  /** Creates the pre-sized (sparse) file unless it already exists, so received chunks are never lost. */
  async ensure(uploadId: string, size: number): Promise<void> {
    await fsp.mkdir(this.dir, { recursive: true });
    let handle: fsp.FileHandle;
    try {
      handle = await fsp.open(this.pathOf(uploadId), 'wx');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') return;
      throw error;
    }
    try {
      await handle.truncate(size);
    } finally {
      await handle.close();
    }
  }

  /**
   * Writes exactly `length` bytes from `source` at `offset`. More or fewer bytes → 400 (what was written
   * stays unmarked, so the chunk is still missing). With `expectedSha1`, a mismatch → 422.
   * With `alreadyReceived`, the bytes are checked the same way but not written: a received chunk is never
   * overwritten (its bytes may already be hashed, and a garbled retry must not damage them).
   * `beforeWrite` runs before each write (and may stop the chunk by throwing). The `keeper` takes the
   * written bytes the memory budget keeps (those the hash needs soonest); on failure the caller lets go
   * of what it took.
   */
  async writeChunk(
    uploadId: string,
    offset: number,
    length: number,
    source: Readable,
    { expectedSha1, alreadyReceived = false, beforeWrite, keeper }: ChunkWriteOptions,
  ): Promise<void> {
    const file = await StagedFile.open(this.pathOf(uploadId)).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') throw new AppError('not_found', 'The upload has no staged file any more.');
      throw error;
    });
    const hash = expectedSha1 ? createHash('sha1') : null;
    const writer = alreadyReceived ? null : file.writerAt(offset, { keeper, beforeWrite });
    let received = 0;
    let excess = 0;
    try {
      // not destroyed on failing early: the request must stay able to carry the 400
      await eachPiece(
        source,
        (piece) => {
          if (excess > 0 || received + piece.length > length) {
            excess += piece.length;
            // A little extra is read and dropped, so the keep-alive connection stays usable after the 400.
            // Far more answers at once, and the connection is cut after a bounded lingering read (cutting
            // at once would reset it before the client could read the answer).
            if (excess > MAX_DRAINED_EXCESS) throw chunkTooLong(length);
            return undefined;
          }
          hash?.update(piece);
          received += piece.length;
          return writer?.add(piece);
        },
        { destroyOnFailure: false },
      );
      await writer?.finish();
      if (excess > 0) throw chunkTooLong(length);
      if (received !== length) throw new AppError('invalid_input', `chunk has ${received} bytes; expected ${length}`);
      if (hash && hash.digest('hex') !== expectedSha1) {
        throw new AppError('chunk_hash_mismatch', 'The chunk bytes do not match X-Chunk-Sha1.');
      }
    } catch (error) {
      if (excess > MAX_DRAINED_EXCESS) lingerThenCut(source);
      throw error;
    } finally {
      await writer?.release();
      file.closeInBackground();
    }
  }

  /** Whether the staged file is still there: completion moves it into the blobs, or drops it. */
  async exists(uploadId: string): Promise<boolean> {
    return fsp.access(this.pathOf(uploadId)).then(
      () => true,
      (error: NodeJS.ErrnoException) => {
        if (error.code === 'ENOENT') return false;
        throw error;
      },
    );
  }

  async remove(uploadId: string): Promise<void> {
    await fsp.rm(this.pathOf(uploadId), { force: true });
  }
}

const MAX_DRAINED_EXCESS = 1024 * 1024;
const MAX_LINGER_BYTES = 16 * 1024 * 1024;

const chunkTooLong = (length: number) => new AppError('invalid_input', `chunk is longer than the expected ${length} bytes`);

/** Drops what is left of a request body; past MAX_LINGER_BYTES the connection is cut. */
function lingerThenCut(source: Readable): void {
  let dropped = 0;
  source.on('data', (piece: Buffer) => {
    dropped += piece.length;
    if (dropped > MAX_LINGER_BYTES) source.destroy();
  });
  source.resume();
}
