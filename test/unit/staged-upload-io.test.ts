import { createHash, randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { PrefixHashers } from '../../src/upload/prefix-hasher.js';
import { StagedFile, type LandedBytes } from '../../src/storage/staged-file.js';

const MiB = 1024 * 1024;
const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A pre-sized staged file in a fresh directory on the disk the tests run on. */
async function stagedFile(size: number): Promise<string> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'filestore-staged-'));
  cleanups.push(() => fsp.rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'upload.part');
  await fsp.writeFile(file, '');
  await fsp.truncate(file, size);
  return file;
}

/**
 * Writes `bytes` at `position` in pieces of random sizes, as a request body arrives; with `keep`, returns
 * the written bytes kept in memory.
 */
async function writeInPieces(filePath: string, bytes: Buffer, position: number, keep = false): Promise<LandedBytes[]> {
  const file = await StagedFile.open(filePath);
  const landed: LandedBytes[] = [];
  const writer = file.writerAt(position, keep ? { distanceTo: () => 0, take: (kept) => landed.push(kept) } : undefined);
  try {
    for (let at = 0; at < bytes.length; ) {
      const length = Math.min(bytes.length - at, 1 + Math.floor(Math.random() * 100_000));
      await writer.add(bytes.subarray(at, at + length));
      at += length;
    }
    await writer.finish();
    return landed;
  } finally {
    writer.release();
    await file.close();
  }
}

const sha1 = (bytes: Buffer) => createHash('sha1').update(bytes).digest('hex');

describe('staged upload files', () => {
  it('hold exactly the bytes written at block-aligned and unaligned positions (written directly and buffered), with a tail that is not whole blocks', async () => {
    const content = randomBytes(5 * MiB + 12_345);
    const filePath = await stagedFile(content.length);
    const oddChunk = 300_001; // neither position nor length are whole blocks: these go through the page cache
    const cuts = [0, 4 * MiB, 4 * MiB + oddChunk, 4 * MiB + 2 * oddChunk, content.length];
    for (const index of [3, 0, 2, 1]) await writeInPieces(filePath, content.subarray(cuts[index], cuts[index + 1]), cuts[index]!);

    const stored = await fsp.readFile(filePath);
    expect(stored.length).toBe(content.length);
    expect(stored.equals(content)).toBe(true);
  });

  it('hash to the SHA-1 of the whole file when the prefix advances by sizes that are not whole blocks', async () => {
    const content = randomBytes(3 * MiB + 777);
    const filePath = await stagedFile(content.length);
    await writeInPieces(filePath, content, 0);
    const hashers = new PrefixHashers();
    cleanups.push(() => hashers.close());

    for (const target of [300_001, 1 * MiB + 5, 2 * MiB + 4096]) hashers.advance('upload', filePath, target);
    expect(await hashers.finish('upload', filePath, content.length)).toBe(sha1(content));
  });

  it('hash kept bytes from memory in file order, whatever order the chunks land in, and release each once hashed', async () => {
    const chunk = 2 * MiB;
    const content = randomBytes(4 * chunk + 100);
    const filePath = await stagedFile(content.length);
    const hashers = new PrefixHashers();
    cleanups.push(() => hashers.close());
    const released: number[] = [];
    const received = new Set<number>();
    let kept = 0;

    for (const index of [2, 0, 4, 3, 1]) {
      const position = index * chunk;
      const landed = await writeInPieces(filePath, content.subarray(position, position + chunk), position, true);
      kept += landed.length;
      received.add(index);
      let contiguous = 0;
      while (received.has(contiguous / chunk)) contiguous = Math.min(contiguous + chunk, content.length);
      const counted = landed.map((bytes) => ({
        position: bytes.position,
        bytes: bytes.bytes,
        pin: () => bytes.pin(),
        release: () => (released.push(bytes.position), bytes.release()),
      }));
      hashers.advance('upload', filePath, contiguous, counted);
    }
    // garble the file: a hash read back from it would be wrong, so the right one came from memory
    await fsp.writeFile(filePath, Buffer.alloc(content.length));

    expect(await hashers.finish('upload', filePath, content.length)).toBe(sha1(content));
    expect(kept).toBe(Math.ceil(content.length / MiB));
    expect(released.sort((a, b) => a - b)).toEqual([...Array(kept).keys()].map((slot) => slot * MiB));
  });

  it('hash a file smaller than one block', async () => {
    const content = randomBytes(100);
    const filePath = await stagedFile(content.length);
    await writeInPieces(filePath, content, 0);
    const hashers = new PrefixHashers();
    cleanups.push(() => hashers.close());

    expect(await hashers.finish('small', filePath, content.length)).toBe(sha1(content));
  });

  it('refuse to hash past the end of a file shorter than the received chunks say', async () => {
    const filePath = await stagedFile(1 * MiB);
    const hashers = new PrefixHashers();
    cleanups.push(() => hashers.close());

    await expect(hashers.finish('short', filePath, 2 * MiB)).rejects.toThrow(/ended at 1048576 bytes/);
  });
});
