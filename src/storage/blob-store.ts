import type { Readable } from 'node:stream';
import { AppError } from '../errors.js';

/** What every tier's read, readRanges and stat fail with when the blob is not there. */
export const contentMissing = (): AppError => new AppError('unavailable', 'The stored content is missing.');

/** An inclusive byte range, as HTTP Range speaks it. */
export interface ByteRange {
  start: number;
  end: number;
}

/** Where blobs live on one tier. Locations are opaque strings the store itself hands out. */
export interface BlobStore {
  readonly tier: 'local' | 's3';
  /** The blob's bytes, or only `range` of them. */
  read(location: string, range?: ByteRange): Promise<Readable>;
  /** Small ranges of the blob, each in memory (a proof's challenge: up to 64 KiB each). */
  readRanges(location: string, ranges: ByteRange[]): Promise<Buffer[]>;
  /**
   * The blob's size, read without opening or fetching any of its bytes (a HEAD's answer); fails as
   * `read` does when the blob is missing.
   */
  stat(location: string): Promise<{ size: number }>;
  remove(location: string): Promise<void>;
  ping(): Promise<void>;
}

/** The tier new content lands on: it takes finished local files in. */
export interface LandingStore extends BlobStore {
  /** Takes ownership of a finished local file (moved, not copied) as a blob of `sha1`; returns its location. */
  adopt(filePath: string, sha1: string): Promise<string>;
  /** Whether the blob's file is there. */
  holds(location: string): Promise<boolean>;
  /** The local file holding a blob, for a move to another tier. */
  pathOf(location: string): string;
  /**
   * Every blob of `sha1` this store holds, whether or not a row points at it: the one a completion killed
   * between adopting its bytes and recording them is among them.
   */
  findAdopted(sha1: string): Promise<Array<{ location: string; size: number }>>;
  /**
   * What tells this landing apart from every other landing of the same content, past and future (a
   * location is never handed out twice): a copy on another tier carries it in its key.
   */
  landingTag(location: string): string;
}

/** The tier blobs are moved to: it stores a local file and proves it holds exactly those bytes. */
export interface ArchiveStore extends BlobStore {
  store(filePath: string, key: string, expected: { size: number; sha1: string }): Promise<string>;
  /** Aborts multipart uploads begun before `time` (epoch ms): a transfer whose worker died mid-copy. */
  abortUploadsStartedBefore(time: number): Promise<number>;
  /** A time-limited public URL for the object, or null when no public endpoint is configured. */
  presign(location: string, options: { expiresInSeconds: number; contentDisposition: string }): Promise<string | null>;
}
