import { createHash, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

export interface HashedTempFile {
  path: string;
  sha1: string;
  size: number;
}

/** Where bytes wait before they become a blob: on the same filesystem as the blobs, so adopting is a rename. */
export class TempFiles {
  readonly dir: string;

  constructor(dataDir: string) {
    this.dir = path.join(dataDir, 'tmp');
  }

  /**
   * Streams `source` to a new temp file, computing its SHA-1 and size on the way (one pass, with
   * backpressure), and fsyncs it so a blob made from it survives a crash. Removes the file on failure.
   */
  async write(source: Readable, onBytes?: (count: number) => void): Promise<HashedTempFile> {
    await fsp.mkdir(this.dir, { recursive: true });
    const filePath = path.join(this.dir, randomUUID());
    const hash = createHash('sha1');
    let size = 0;
    const meter = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        hash.update(chunk);
        size += chunk.length;
        onBytes?.(chunk.length);
        done(null, chunk);
      },
    });
    const out = fs.createWriteStream(filePath, { flags: 'wx' });
    try {
      await pipeline(source, meter, out);
      const handle = await fsp.open(filePath, 'r+');
      try {
        await handle.datasync();
      } finally {
        await handle.close();
      }
    } catch (error) {
      await fsp.rm(filePath, { force: true });
      throw error;
    }
    return { path: filePath, sha1: hash.digest('hex'), size };
  }

  async discard(filePath: string): Promise<void> {
    await fsp.rm(filePath, { force: true });
  }
}
