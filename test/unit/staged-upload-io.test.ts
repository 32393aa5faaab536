import { createHash, randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { PrefixHashers } from '../../src/upload/prefix-hasher.js';
import { StagedFile, type Keeper, type LandedBytes, type SlotWriterOptions } from '../../src/storage/staged-file.js';

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

/** Writes `bytes` at `position` in pieces of random sizes, as a request body arrives (written slots go to `options.keeper`). */
async function writeInPieces(filePath: string, bytes: Buffer, position: number, options: SlotWriterOptions = {}): Promise<void> {
  const file = await StagedFile.open(filePath);
  const writer = file.writerAt(position, options);
  try {
    for (let at = 0; at < bytes.length; ) {
      const length = Math.min(bytes.length - at, 1 + Math.floor(Math.random() * 100_000));
      await writer.add(bytes.subarray(at, at + length));
      at += length;
    }
    await writer.finish();
  } finally {
    await writer.release();
    await file.close();
  }
}

/** A keeper that hands each slot to `keeper` behind a wrapper recording its releases in `released`. */
function counting(keeper: Keeper, released: number[], taken: { count: number }): Keeper {
  return {
    distanceTo: (position) => keeper.distanceTo(position),
    take: (bytes: LandedBytes) => {
      taken.count += 1;
      keeper.take({ position: bytes.position, bytes: bytes.bytes, pin: () => bytes.pin(), release: () => (released.push(bytes.position), bytes.release()) });
    },
  };
}

const sha1 = (bytes: Buffer) => createHash('sha1').update(bytes).digest('hex');

/**
 * A staged upload of three 2 MiB chunks hashed tentatively (as with a declared sha1), and a writer of
 * one chunk's bytes (any bytes: a failed attempt's too) that returns the chunk's hashing.
 */
async function tentativeUpload(hashers = new PrefixHashers()) {
  const chunk = 2 * MiB;
  const content = randomBytes(3 * chunk);
  const filePath = await stagedFile(content.length);
  cleanups.push(() => hashers.close());
  const write = async (index: number, bytes: Buffer) => {
    const hashing = hashers.chunk('upload', filePath, { start: index * chunk, end: (index + 1) * chunk, tentative: true });
    await writeInPieces(filePath, bytes, index * chunk, { keeper: hashing });
    return hashing;
  };
  return { chunk, content, filePath, hashers, write };
}

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
    const taken = { count: 0 };

    for (const index of [2, 0, 4, 3, 1]) {
      const position = index * chunk;
      const end = Math.min(position + chunk, content.length);
      const keeper = hashers.chunk('upload', filePath, { start: position, end, tentative: false });
      await writeInPieces(filePath, content.subarray(position, end), position, { keeper: counting(keeper, released, taken) });
      received.add(index);
      let contiguous = 0;
      while (received.has(contiguous / chunk)) contiguous = Math.min(contiguous + chunk, content.length);
      hashers.advance('upload', filePath, contiguous);
    }
    // garble the file: a hash read back from it would be wrong, so the right one came from memory
    await fsp.writeFile(filePath, Buffer.alloc(content.length));

    expect(await hashers.finish('upload', filePath, content.length)).toBe(sha1(content));
    const kept = taken.count;
    expect(kept).toBe(Math.ceil(content.length / MiB));
    expect(released.sort((a, b) => a - b)).toEqual([...Array(kept).keys()].map((slot) => slot * MiB));
  });

  it('hash a tentative chunk while it arrives, and take its bytes back when it fails: the SHA-1 is of the bytes that stay', async () => {
    const { chunk, content, filePath, hashers, write } = await tentativeUpload();

    // a first attempt at chunk 0 sends other bytes, and the hash takes them in before the chunk fails
    const failed = await write(0, randomBytes(chunk));
    expect(hashers.distanceTo('upload', 0)).toBe(-chunk);
    failed.abandon();
    expect(hashers.distanceTo('upload', 0)).toBe(0);

    await write(0, content.subarray(0, chunk));
    hashers.advance('upload', filePath, chunk);
    await write(2, content.subarray(2 * chunk));
    await write(1, content.subarray(chunk, 2 * chunk));
    hashers.advance('upload', filePath, content.length);

    expect(await hashers.finish('upload', filePath, content.length)).toBe(sha1(content));
  });

  it('take back, with a failed chunk, the later chunks the hash ran on into, and read those back from the file', async () => {
    const { chunk, content, filePath, hashers, write } = await tentativeUpload();

    const first = await write(0, randomBytes(chunk));
    await write(1, content.subarray(chunk, 2 * chunk));
    // the hash ran on through chunk 0 into chunk 1, neither received whole yet
    expect(hashers.distanceTo('upload', 0)).toBe(-2 * chunk);
    first.abandon();
    expect(hashers.distanceTo('upload', 0)).toBe(0);

    await write(0, content.subarray(0, chunk));
    hashers.advance('upload', filePath, 2 * chunk);
    await write(2, content.subarray(2 * chunk));
    hashers.advance('upload', filePath, content.length);

    expect(await hashers.finish('upload', filePath, content.length)).toBe(sha1(content));
  });

  it('take back a failed chunk\'s hashed bytes even when its upload was quiet long enough to be let go meanwhile', async () => {
    const quietLimitMs = 50;
    const { chunk, content, filePath, hashers, write } = await tentativeUpload(new PrefixHashers(quietLimitMs));

    // the first attempt at chunk 0 stalls after the hash took in its (wrong) bytes, and ends in failure
    // only after another upload's progress has let this quiet one go
    const failed = await write(0, randomBytes(chunk));
    await new Promise((resolve) => setTimeout(resolve, 2 * quietLimitMs));
    hashers.advance('other', filePath, 0);
    failed.abandon();

    await write(0, content.subarray(0, chunk));
    await write(1, content.subarray(chunk, 2 * chunk));
    hashers.advance('upload', filePath, 2 * chunk);
    await write(2, content.subarray(2 * chunk));
    hashers.advance('upload', filePath, content.length);

    expect(await hashers.finish('upload', filePath, content.length)).toBe(sha1(content));
  });

  it('write behind (the next slot filling while the previous one is written): the file holds the stream\'s bytes and the in-order hash is their SHA-1', async () => {
    const content = randomBytes(5 * MiB + 12_345);
    const filePath = await stagedFile(content.length);
    const hashers = new PrefixHashers();
    cleanups.push(() => hashers.close());
    await writeInPieces(filePath, content, 0, { keeper: hashers.inOrder('stream', filePath), writeBehind: true });

    expect((await fsp.readFile(filePath)).equals(content)).toBe(true);
    expect(await hashers.finish('stream', filePath, content.length)).toBe(sha1(content));
  });

  it('write behind: a slot that fails stops the writer with its error, and nothing after it is written', async () => {
    const content = randomBytes(4 * MiB);
    const filePath = await stagedFile(content.length);
    let slotsStarted = 0;
    const beforeWrite = async () => {
      slotsStarted += 1;
      if (slotsStarted === 2) throw new Error('lost the claim');
    };

    await expect(writeInPieces(filePath, content, 0, { beforeWrite, writeBehind: true })).rejects.toThrow('lost the claim');
    const stored = await fsp.readFile(filePath);
    expect(stored.subarray(0, MiB).equals(content.subarray(0, MiB))).toBe(true);
    expect(stored.subarray(MiB).equals(Buffer.alloc(3 * MiB))).toBe(true);
    expect(slotsStarted).toBe(2);
  });

  it('write behind: release() waits for the slot still landing, so the file can be closed right after it', async () => {
    const content = randomBytes(2 * MiB);
    const filePath = await stagedFile(content.length);
    const file = await StagedFile.open(filePath);
    const writer = file.writerAt(0, { beforeWrite: () => new Promise((resolve) => setTimeout(resolve, 50)), writeBehind: true });
    await writer.add(content.subarray(0, MiB));
    await writer.add(content.subarray(MiB, MiB + 1000));
    // the request failed here (its body was cut): the writer is let go and the file closed
    await writer.release();
    await file.close();

    const stored = await fsp.readFile(filePath);
    expect(stored.subarray(0, MiB).equals(content.subarray(0, MiB))).toBe(true);
    expect(stored.subarray(MiB).equals(Buffer.alloc(MiB))).toBe(true);
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

describe('a slot write that fails', () => {
  it('stops every later write, so no slot lands beyond the failed one (a hole tus would count as received)', async () => {
    const filePath = await stagedFile(0);
    const file = await StagedFile.open(filePath);
    const write = file.write.bind(file);
    let failures = 0;
    // the second slot's write fails once, as a full disk would before space is freed again
    file.write = async (bytes, position) => {
      if (position === MiB && failures++ === 0) throw Object.assign(new Error('no space left on device'), { code: 'ENOSPC' });
      return write(bytes, position);
    };
    const writer = file.writerAt(0, { writeBehind: true });
    const bytes = randomBytes(3 * MiB + 1000);
    try {
      await expect(
        (async () => {
          for (let at = 0; at < bytes.length; at += 64 * 1024) await writer.add(bytes.subarray(at, at + 64 * 1024));
          await writer.finish();
        })(),
      ).rejects.toThrow('no space left on device');
      // what the tus store does after a failed PATCH: write what did arrive
      await expect(writer.finish()).rejects.toThrow('no space left on device');
    } finally {
      await writer.release();
      await file.close();
    }
    const stored = await fsp.readFile(filePath);
    expect(stored.length).toBe(MiB);
    expect(stored.equals(bytes.subarray(0, MiB))).toBe(true);
  });
});
