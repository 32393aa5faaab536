import type { Readable } from 'node:stream';

/** An inclusive byte range, as HTTP Range speaks it. */
export interface ByteRange {
  start: number;
  end: number;
}

/** Where blobs live on one tier. Locations are opaque strings the store itself hands out. */
export interface BlobStore {
  readonly tier: 'local' | 's3';
  /** Takes ownership of a finished local file (moved, not copied) as the blob of `sha1`; returns its location. */
  adopt(filePath: string, sha1: string): Promise<string>;
  /** The blob's bytes, or only `range` of them. */
  read(location: string, range?: ByteRange): Promise<Readable>;
  remove(location: string): Promise<void>;
  ping(): Promise<void>;
}
