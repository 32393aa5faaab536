import { createHash, randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppError } from '../../src/errors.js';
import type { BlobStore, ByteRange } from '../../src/storage/blob-store.js';
import { LocalBlobStore } from '../../src/storage/blob-store.local.js';
import { S3BlobStore } from '../../src/storage/blob-store.s3.js';
import { SERVICE_DEFAULTS, servicesAvailable } from '../support/services.js';

/**
 * One adapter: a store, a scratch dir for source files, how bytes get into it (the landing tier adopts
 * a finished file; the archive tier stores a verified stream, removing nothing), and cleanup.
 */
interface Opened {
  store: BlobStore;
  scratchDir: string;
  put(source: string, key: string): Promise<string>;
  close(): Promise<void>;
}

const sha1Of = (bytes: Buffer) => createHash('sha1').update(bytes).digest('hex');

async function openLocal(): Promise<Opened> {
  const dataDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'filestore-blob-contract-'));
  const scratchDir = path.join(dataDir, 'tmp');
  await fsp.mkdir(scratchDir);
  const store = new LocalBlobStore(dataDir);
  return {
    store,
    scratchDir,
    put: async (source) => store.adopt(source, sha1Of(await fsp.readFile(source))),
    close: () => fsp.rm(dataDir, { recursive: true, force: true }),
  };
}

async function openS3(): Promise<Opened> {
  const scratchDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'filestore-blob-contract-s3-'));
  const store = new S3BlobStore(
    {
      endpoint: SERVICE_DEFAULTS.S3_ENDPOINT,
      accessKeyId: SERVICE_DEFAULTS.S3_ACCESS_KEY,
      secretAccessKey: SERVICE_DEFAULTS.S3_SECRET_KEY,
      region: SERVICE_DEFAULTS.S3_REGION,
    },
    SERVICE_DEFAULTS.S3_BUCKET,
  );
  return {
    store,
    scratchDir,
    put: async (source, key) => {
      const bytes = await fsp.readFile(source);
      const location = await store.store(source, key, { size: bytes.length, sha1: sha1Of(bytes) });
      await fsp.rm(source);
      return location;
    },
    close: async () => (await store.close(), await fsp.rm(scratchDir, { recursive: true, force: true })),
  };
}

const s3Up = await servicesAvailable('blob store contract (s3)', ['ceph-rgw']);
const adapters = [
  { name: 'LocalBlobStore (temp dir)', open: openLocal, enabled: true },
  { name: 'S3BlobStore (Ceph RGW)', open: openS3, enabled: s3Up },
];

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Uint8Array));
  return Buffer.concat(chunks);
}

for (const adapter of adapters) {
  describe.skipIf(!adapter.enabled)(`blob store contract: ${adapter.name}`, () => {
    let opened: Opened;
    let store: BlobStore;
    const adopted: string[] = [];

    beforeAll(async () => {
      opened = await adapter.open();
      store = opened.store;
    });
    afterAll(async () => {
      if (!opened) return;
      await Promise.allSettled(adopted.map((location) => store.remove(location)));
      await opened.close();
    });

    /** Writes `bytes` to a scratch file and hands it to the store, as an upload would. */
    async function adopt(bytes: Buffer): Promise<{ location: string; source: string }> {
      const source = path.join(opened.scratchDir, randomUUID());
      await fsp.writeFile(source, bytes);
      // random key: runs sharing the bucket never collide
      const location = await opened.put(source, `contract/${sha1Of(bytes)}/${randomUUID()}`);
      adopted.push(location);
      return { location, source };
    }

    const read = async (location: string, range?: ByteRange) => collect(await store.read(location, range));

    it('answers ping', async () => {
      await expect(store.ping()).resolves.toBeUndefined();
    });

    it('takes a file in: the source path is gone and the blob reads back byte for byte', async () => {
      const bytes = randomBytes(300_000);
      const { location, source } = await adopt(bytes);
      expect(typeof location).toBe('string');
      expect(location.length).toBeGreaterThan(0);
      expect(fs.existsSync(source)).toBe(false);
      expect((await read(location)).equals(bytes)).toBe(true);
    });

    it('keeps different blobs apart', async () => {
      const a = randomBytes(1000);
      const b = randomBytes(1000);
      const [first, second] = [await adopt(a), await adopt(b)];
      expect(first.location).not.toBe(second.location);
      expect((await read(first.location)).equals(a)).toBe(true);
      expect((await read(second.location)).equals(b)).toBe(true);
    });

    it('reads an inclusive byte range: the first byte, a middle slice, the last byte, the whole', async () => {
      const bytes = randomBytes(100_000);
      const { location } = await adopt(bytes);
      expect((await read(location, { start: 0, end: 0 })).equals(bytes.subarray(0, 1))).toBe(true);
      expect((await read(location, { start: 40_000, end: 59_999 })).equals(bytes.subarray(40_000, 60_000))).toBe(true);
      expect((await read(location, { start: 99_999, end: 99_999 })).equals(bytes.subarray(99_999))).toBe(true);
      expect((await read(location, { start: 0, end: 99_999 })).equals(bytes)).toBe(true);
    });

    it('reads several small ranges into memory at once, in the order asked (a proof challenge)', async () => {
      const bytes = randomBytes(200_000);
      const { location } = await adopt(bytes);
      const ranges = [{ start: 150_000, end: 150_000 + 65_535 }, { start: 0, end: 0 }, { start: 199_990, end: 199_999 }];
      const pieces = await store.readRanges(location, ranges);
      expect(pieces.map((piece) => piece.toString('hex'))).toEqual(ranges.map(({ start, end }) => bytes.subarray(start, end + 1).toString('hex')));
    });

    it('stores and reads back a 0-byte blob', async () => {
      const { location, source } = await adopt(Buffer.alloc(0));
      expect(fs.existsSync(source)).toBe(false);
      expect((await read(location)).length).toBe(0);
    });

    it('tells a blob\'s size (stat), 0 for an empty one', async () => {
      const { location } = await adopt(randomBytes(12_345));
      expect(await store.stat(location)).toEqual({ size: 12_345 });
      const { location: empty } = await adopt(Buffer.alloc(0));
      expect(await store.stat(empty)).toEqual({ size: 0 });
    });

    it('fails to read or stat a removed blob, with the "unavailable" error both tiers share', async () => {
      const { location } = await adopt(randomBytes(2000));
      await store.remove(location);
      const error = await read(location).then(
        () => expect.fail('reading a removed blob should fail'),
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(AppError);
      expect((error as AppError).code).toBe('unavailable');
      const rangesError = await store.readRanges(location, [{ start: 0, end: 9 }]).then(
        () => expect.fail('reading ranges of a removed blob should fail'),
        (e: unknown) => e,
      );
      expect((rangesError as AppError).code).toBe('unavailable');
      const statError = await store.stat(location).then(
        () => expect.fail('the stat of a removed blob should fail'),
        (e: unknown) => e,
      );
      expect((statError as AppError).code).toBe('unavailable');
    });

    it('removes a blob that is already gone without complaint', async () => {
      const { location } = await adopt(randomBytes(10));
      await store.remove(location);
      await expect(store.remove(location)).resolves.toBeUndefined();
    });
  });
}
