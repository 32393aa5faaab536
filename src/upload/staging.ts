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
    const writer = new BatchedWriter(handle, offset, !alreadyReceived);
    let received = 0;
    let excess = 0;
    try {
      // not destroyed on leaving the loop early: the request must stay able to carry the 400
      for await (const piece of source.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
        if (excess > 0 || received + piece.length > length) {
          excess += piece.length;
          // A little extra is read and dropped, so the keep-alive connection stays usable after the 400.
          // Far more answers at once, and the connection is cut after a bounded lingering read (cutting
          // at once would reset it before the client could read the answer).
          if (excess > MAX_DRAINED_EXCESS) {
            lingerThenCut(source);
            throw new AppError('invalid_input', `chunk is longer than the expected ${length} bytes`);
          }
          continue;
        }
        hash?.update(piece);
        received += piece.length;
        await writer.add(piece);
      }
      await writer.finish();
    } finally {
      await writer.settle();
      await handle.close();
    }
    if (excess > 0) throw new AppError('invalid_input', `chunk is longer than the expected ${length} bytes`);
    if (received !== length) throw new AppError('invalid_input', `chunk has ${received} bytes; expected ${length}`);
    if (hash && hash.digest('hex') !== expectedSha1) {
      throw new AppError('chunk_hash_mismatch', 'The chunk bytes do not match X-Chunk-Sha1.');
    }
  }

  async remove(uploadId: string): Promise<void> {
    await fsp.rm(this.pathOf(uploadId), { force: true });
  }
}

const BATCH_BYTES = 2 * 1024 * 1024;
const MAX_DRAINED_EXCESS = 1024 * 1024;
const MAX_LINGER_BYTES = 16 * 1024 * 1024;

/** Drops what is left of a request body; past MAX_LINGER_BYTES the connection is cut. */
function lingerThenCut(source: Readable): void {
  let dropped = 0;
  source.on('data', (piece: Buffer) => {
    dropped += piece.length;
    if (dropped > MAX_LINGER_BYTES) source.destroy();
  });
}

/**
 * Positional writes of a request's pieces, gathered into ~2 MiB batches (one writev each) with one
 * batch in flight while the next fills. One write per ~46 KiB piece cost a fifth of the event loop in
 * thread-pool round trips; a write stream created per chunk at `start` hung on Node 20.
 */
class BatchedWriter {
  private batch: Buffer[] = [];
  private batchBytes = 0;
  private inFlight: Promise<void> = Promise.resolve();

  constructor(
    private readonly handle: fsp.FileHandle,
    private position: number,
    private readonly enabled: boolean,
  ) {}

  async add(piece: Buffer): Promise<void> {
    if (!this.enabled) return;
    this.batch.push(piece);
    this.batchBytes += piece.length;
    if (this.batchBytes >= BATCH_BYTES) await this.flush();
  }

  /** Starts writing what is gathered, after the previous batch has landed. */
  async flush(): Promise<void> {
    await this.inFlight;
    if (this.batchBytes === 0) return;
    const buffers = this.batch;
    const position = this.position;
    this.position += this.batchBytes;
    this.batch = [];
    this.batchBytes = 0;
    this.inFlight = writeAll(this.handle, buffers, position);
  }

  /** Writes what is left and waits until every byte has landed; a failed write rejects here. */
  async finish(): Promise<void> {
    await this.flush();
    await this.inFlight;
  }

  /** On the way out after a failure: lets a write still in flight end before the file is closed. */
  async settle(): Promise<void> {
    await this.inFlight.catch(() => undefined);
  }
}

async function writeAll(handle: fsp.FileHandle, buffers: Buffer[], position: number): Promise<void> {
  const total = buffers.reduce((sum, buffer) => sum + buffer.length, 0);
  let done = (await handle.writev(buffers, position)).bytesWritten;
  if (done === total) return;
  // a short write (rare on regular files): finish the rest piece by piece
  const rest = Buffer.concat(buffers).subarray(done);
  for (let at = 0; at < rest.length; ) {
    const { bytesWritten } = await handle.write(rest, at, rest.length - at, position + done);
    at += bytesWritten;
    done += bytesWritten;
  }
}
