import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { contentMissing, type ByteRange, type LandingStore } from './blob-store.js';
import { namesIn } from './missing-files.js';

// Reads of a download: the stream's default 64 KiB served a 1 GiB blob from a cold cache at 500–780
// MiB/s with 1.2–1.9 CPU s; 256 KiB at 1590–1770 MiB/s with 0.5 CPU s (1 MiB was no faster).
const READ_BYTES = 256 * 1024;
const LOCATION = /^[0-9a-f]{2}\/[0-9a-f]{2}\/([0-9a-f]{40})\.([0-9a-f]{12})$/;
const FAN_OUT = /^[0-9a-f]{2}$/;

function missingAsUnavailable(error: NodeJS.ErrnoException): never {
  if (error.code === 'ENOENT') throw contentMissing();
  throw error;
}

/**
 * Blobs as files under DATA_DIR/blobs/ab/cd/<sha1>.<random>; the location is that relative path. Each
 * adoption gets its own path, so deleting an old blob can never remove a newer copy of the same content.
 */
export class LocalBlobStore implements LandingStore {
  readonly tier = 'local' as const;
  private readonly root: string;

  constructor(dataDir: string) {
    this.root = path.join(dataDir, 'blobs');
  }

  async adopt(filePath: string, sha1: string): Promise<string> {
    const location = `${sha1.slice(0, 2)}/${sha1.slice(2, 4)}/${sha1}.${randomBytes(6).toString('hex')}`;
    const target = this.resolve(location);
    await fsp.mkdir(path.dirname(target), { recursive: true });
    // rename is atomic on one filesystem: the blob is either absent or complete, never torn
    await fsp.rename(filePath, target);
    return location;
  }

  async holds(location: string): Promise<boolean> {
    return fsp.access(this.resolve(location)).then(
      () => true,
      () => false,
    );
  }

  async findAdopted(sha1: string): Promise<Array<{ location: string; size: number }>> {
    const dir = `${sha1.slice(0, 2)}/${sha1.slice(2, 4)}`;
    const names = await namesIn(path.join(this.root, dir));
    const found: Array<{ location: string; size: number }> = [];
    for (const name of names) {
      const location = `${dir}/${name}`;
      if (!name.startsWith(`${sha1}.`) || !LOCATION.test(location)) continue;
      // removed since the listing (a collection, a duplicate dropped): not a candidate
      const stat = await fsp.stat(this.resolve(location)).catch(() => undefined);
      if (stat?.isFile()) found.push({ location, size: stat.size });
    }
    return found;
  }

  async read(location: string, range?: ByteRange): Promise<Readable> {
    const handle = await this.open(location);
    return handle.createReadStream({ ...(range && { start: range.start, end: range.end }), highWaterMark: READ_BYTES });
  }

  async readRanges(location: string, ranges: ByteRange[]): Promise<Buffer[]> {
    const handle = await this.open(location);
    try {
      return await Promise.all(
        ranges.map(async ({ start, end }) => {
          const buffer = Buffer.alloc(end - start + 1);
          const { bytesRead } = await handle.read(buffer, 0, buffer.length, start);
          return buffer.subarray(0, bytesRead);
        }),
      );
    } finally {
      // A proof's answer waits for these bytes, not for the close: one thread-pool round trip less on
      // its way (FileHandle.close waits for reads still running, so a failed one is safe too).
      handle.close().catch(() => undefined);
    }
  }

  async stat(location: string): Promise<{ size: number }> {
    const stat = await fsp.stat(this.resolve(location)).catch(missingAsUnavailable);
    return { size: stat.size };
  }

  pathOf(location: string): string {
    return this.resolve(location);
  }

  landingTag(location: string): string {
    const match = LOCATION.exec(location);
    if (!match) throw new Error(`not a local blob location: ${location}`);
    return match[2]!;
  }

  async remove(location: string): Promise<void> {
    await fsp.rm(this.resolve(location), { force: true });
  }

  /**
   * Every blob file on disk, whether or not a row points at it, with the sha1 its name carries (the one it
   * was adopted as, so its row's), one directory at a time: a big store holds millions, never all at once.
   */
  async *stored(): AsyncGenerator<{ location: string; sha1: string }> {
    for (const first of await namesIn(this.root, FAN_OUT)) {
      for (const second of await namesIn(path.join(this.root, first), FAN_OUT)) {
        for (const name of await namesIn(path.join(this.root, first, second))) {
          const location = `${first}/${second}/${name}`;
          const sha1 = LOCATION.exec(location)?.[1];
          if (sha1) yield { location, sha1 };
        }
      }
    }
  }

  async ping(): Promise<void> {
    await fsp.mkdir(this.root, { recursive: true });
    await fsp.access(this.root, fs.constants.W_OK);
  }

  private open(location: string): Promise<fsp.FileHandle> {
    return fsp.open(this.resolve(location), 'r').catch(missingAsUnavailable);
  }

  private resolve(location: string): string {
    if (!LOCATION.test(location)) throw new Error(`not a local blob location: ${location}`);
    return path.join(this.root, location);
  }
}
