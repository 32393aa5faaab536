import { randomUUID } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { eachPiece } from './each-piece.js';
import { StagedFile, type Keeper } from './staged-file.js';

export interface HashedTempFile {
  path: string;
  sha1: string;
  size: number;
}

/** What hashes a file as it is written (PrefixHashers): from bytes still in memory, else from the file. */
export interface FileHasher {
  /** Takes the slots of `filePath`, written in order, as they land. */
  inOrder(key: string, filePath: string): Keeper;
  /** The hex SHA-1 of the first `size` bytes, once they are flushed to disk. */
  finish(key: string, filePath: string, size: number): Promise<string>;
  drop(key: string): void;
}

/** Where bytes wait before they become a blob: on the same filesystem as the blobs, so adopting is a rename. */
export class TempFiles {
  readonly dir: string;

  constructor(
    dataDir: string,
    private readonly hasher: FileHasher,
  ) {
    this.dir = path.join(dataDir, 'tmp');
  }

  /**
   * Streams `source` to a new temp file (with backpressure) and returns its SHA-1 and size, flushed so
   * a blob made from it survives a crash. The bytes arrive in order, so each written slot goes to the
   * hashing thread at once, from memory: hashing on the event loop had held a 1 GiB curl -F upload to
   * about 350 MiB/s. Removes the file on failure.
   */
  async write(source: Readable, onBytes?: (count: number) => void): Promise<HashedTempFile> {
    await fsp.mkdir(this.dir, { recursive: true });
    const id = randomUUID();
    const filePath = path.join(this.dir, id);
    const key = `temp:${id}`;
    const file = await StagedFile.open(filePath, true);
    const writer = file.writerAt(0, { keeper: this.hasher.inOrder(key, filePath), writeBehind: true });
    let size = 0;
    try {
      await eachPiece(source, (piece) => {
        size += piece.length;
        onBytes?.(piece.length);
        return writer.add(piece);
      });
      await writer.finish();
      return { path: filePath, sha1: await this.hasher.finish(key, filePath, size), size };
    } catch (error) {
      // a slot still landing hands itself to the hash when it lands: only then is the hash dropped for good
      await writer.release();
      this.hasher.drop(key);
      await fsp.rm(filePath, { force: true });
      throw error;
    } finally {
      await writer.release();
      await file.close();
    }
  }

  async discard(filePath: string): Promise<void> {
    await fsp.rm(filePath, { force: true });
  }
}
