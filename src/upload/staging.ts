import { createHash } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { AppError } from '../errors.js';

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
   */
  async writeChunk(uploadId: string, offset: number, length: number, source: Readable, expectedSha1?: string, alreadyReceived = false): Promise<void> {
    const handle = await fsp.open(this.pathOf(uploadId), 'r+').catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') throw new AppError('not_found', 'The upload has no staged file any more.');
      throw error;
    });
    const hash = expectedSha1 ? createHash('sha1') : null;
    let written = 0;
    let tooLong = false;
    try {
      for await (const piece of source as AsyncIterable<Buffer>) {
        // Too long: read the rest without writing it. Leaving the loop early would destroy the request
        // and leave its keep-alive connection hung after the 400.
        if (tooLong || written + piece.length > length) {
          tooLong = true;
          continue;
        }
        hash?.update(piece);
        // Node 20: one write per piece at its position; a write stream created per chunk at `start` hung.
        for (let done = 0; !alreadyReceived && done < piece.length; ) {
          const { bytesWritten } = await handle.write(piece, done, piece.length - done, offset + written + done);
          done += bytesWritten;
        }
        written += piece.length;
      }
    } finally {
      await handle.close();
    }
    if (tooLong) throw new AppError('invalid_input', `chunk is longer than the expected ${length} bytes`);
    if (written !== length) throw new AppError('invalid_input', `chunk has ${written} bytes; expected ${length}`);
    if (hash && hash.digest('hex') !== expectedSha1) {
      throw new AppError('chunk_hash_mismatch', 'The chunk bytes do not match X-Chunk-Sha1.');
    }
  }

  async remove(uploadId: string): Promise<void> {
    await fsp.rm(this.pathOf(uploadId), { force: true });
  }
}
