import { createHash, randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { Upload, type DetailedError, type UploadOptions } from 'tus-js-client';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { availableProfiles, useApp, type RunningApp } from '../support/app.js';
import { expectErrorBody, newUser, sha1 } from '../support/files.js';
import { createTusUpload, tusRequest } from '../support/tus.js';
import { MiB } from '../support/uploads.js';

const profiles = await availableProfiles('tus');

type User = Awaited<ReturnType<typeof newUser>>;
const TUS = { 'tus-resumable': '1.0.0' };
const base64Sha1 = (bytes: Buffer) => createHash('sha1').update(bytes).digest('base64');

/** Runs a tus-js-client upload of `bytes` as `user`; resolves with the upload URL, rejects with the client's error. */
function tusUpload(app: RunningApp, user: User, bytes: Buffer, options: Partial<UploadOptions> = {}) {
  let upload!: Upload;
  const done = new Promise<string>((resolve, reject) => {
    upload = new Upload(bytes, {
      endpoint: `${app.baseUrl}/api/tus`,
      headers: { authorization: `Bearer ${user.token}` },
      chunkSize: MiB,
      retryDelays: null,
      ...options,
      onSuccess: () => resolve(upload.url!),
      onError: reject,
    });
    upload.start();
  });
  return { upload, done };
}

describe.each(profiles)('tus uploads (%s profile)', (profile) => {
  const app = useApp(profile);

  const tus = tusRequest;
  const listed = async (user: User, folder: string) => (await user.get(`/api/files?folder=${encodeURIComponent(folder)}`)).json?.files ?? [];
  const downloaded = async (user: User, folder: string, name: string) => {
    const file = (await listed(user, folder)).find((f: { name: string }) => f.name === name);
    return file ? (await user.get(`/api/files/${file.id}/content`)).bytes : undefined;
  };
  /** A tus upload created by hand (no bytes yet); returns its URL. */
  const create = (user: User, size: number, filename: string) => createTusUpload(app.baseUrl, user, size, { filename, folder: '/raw' });
  const offsetOf = async (user: User, url: string) => (await tus(user, 'HEAD', url)).headers.get('upload-offset');

  it('uploads with tus-js-client and metadata: the file is listed in its folder with the same bytes', async () => {
    const alice = await newUser(app);
    const bytes = randomBytes(3 * MiB + 4321);
    const { done } = tusUpload(app, alice, bytes, { metadata: { filename: 'movie.bin', folder: '/tus', sha1: sha1(bytes) } });
    const url = await done;
    expect(url).toMatch(/\/api\/tus\/[0-9a-f]{32}$/);
    const files = await listed(alice, '/tus');
    expect(files).toEqual([expect.objectContaining({ name: 'movie.bin', folder: '/tus', size: bytes.length, sha1: sha1(bytes) })]);
    expect((await downloaded(alice, '/tus', 'movie.bin'))!.equals(bytes)).toBe(true);
  });

  it('creation-with-upload: the POST carries the first bytes, PATCHes the rest, and the file has the same bytes and SHA-1', async () => {
    const alice = await newUser(app);
    const bytes = randomBytes(2 * MiB + 5);
    const methods: string[] = [];
    const { done } = tusUpload(app, alice, bytes, {
      uploadDataDuringCreation: true,
      metadata: { filename: 'early.bin', folder: '/tus-early' },
      onBeforeRequest: (req) => void methods.push(req.getMethod()),
    });
    await done;
    expect(methods).toEqual(['POST', 'PATCH', 'PATCH']);
    expect(await listed(alice, '/tus-early')).toEqual([expect.objectContaining({ name: 'early.bin', size: bytes.length, sha1: sha1(bytes) })]);
    expect((await downloaded(alice, '/tus-early', 'early.bin'))!.equals(bytes)).toBe(true);
  });

  it('resumes an aborted upload from its stored URL at the offset the server kept, and completes with the same bytes', async () => {
    const alice = await newUser(app);
    const bytes = randomBytes(5 * MiB + 99);
    let first!: Upload;
    const aborted = new Promise<void>((resolve, reject) => {
      const started = tusUpload(app, alice, bytes, {
        metadata: { filename: 'resumed.bin', folder: '/tus' },
        onChunkComplete: (_size, accepted) => {
          if (accepted >= 2 * MiB) void first.abort().then(resolve, reject);
        },
      });
      first = started.upload;
      started.done.then(() => reject(new Error('finished before the abort')), reject);
    });
    await aborted;
    const url = first.url!;
    const kept = Number(await offsetOf(alice, url));
    expect(kept).toBeGreaterThanOrEqual(2 * MiB);
    expect(kept).toBeLessThan(bytes.length);
    expect(await listed(alice, '/tus')).toEqual([]);

    const patchOffsets: string[] = [];
    const resumed = tusUpload(app, alice, bytes, {
      uploadUrl: url,
      metadata: { filename: 'resumed.bin', folder: '/tus' },
      onBeforeRequest: (req) => {
        if (req.getMethod() === 'PATCH') patchOffsets.push(req.getHeader('Upload-Offset') ?? '');
      },
    });
    expect(await resumed.done).toBe(url);
    expect(patchOffsets[0]).toBe(String(kept));
    expect((await downloaded(alice, '/tus', 'resumed.bin'))!.equals(bytes)).toBe(true);
    // hashed across the interruption: written bytes in memory, the rest read back from the file
    expect(await listed(alice, '/tus')).toEqual([expect.objectContaining({ name: 'resumed.bin', sha1: sha1(bytes) })]);
  });

  it('refuses an upload whose bytes do not match its sha1 metadata and links nothing', async () => {
    const alice = await newUser(app);
    const bytes = randomBytes(2 * MiB);
    const { upload, done } = tusUpload(app, alice, bytes, { metadata: { filename: 'liar.bin', folder: '/tus', sha1: sha1(randomBytes(8)) } });
    const error = (await done.then(() => null, (e: DetailedError) => e))!;
    expect(error).not.toBeNull();
    expect(error.originalResponse?.getStatus()).toBe(422);
    expect(await listed(alice, '/tus')).toEqual([]);
    expect(await app.services.db.primary('user_files').where({ user_id: alice.userId })).toHaveLength(0);
    expect((await tus(alice, 'HEAD', upload.url!)).status).toBe(404);
  });

  it("answers 404 to another user's HEAD, PATCH and DELETE on an upload URL, and leaves the upload alone", async () => {
    const alice = await newUser(app);
    const mallory = await newUser(app);
    const bytes = randomBytes(256 * 1024);
    const url = await create(alice, bytes.length, 'private.bin');
    const half = bytes.subarray(0, bytes.length / 2);
    expect((await tus(alice, 'PATCH', url, { 'upload-offset': '0', 'content-type': 'application/offset+octet-stream' }, half)).status).toBe(204);

    expect((await tus(mallory, 'HEAD', url)).status).toBe(404);
    const patch = await tus(mallory, 'PATCH', url, { 'upload-offset': String(half.length), 'content-type': 'application/offset+octet-stream' }, bytes.subarray(half.length));
    expect(patch.status).toBe(404);
    const checksummed = await tus(mallory, 'PATCH', url, {
      'upload-offset': String(half.length),
      'content-type': 'application/offset+octet-stream',
      'upload-checksum': `sha1 ${base64Sha1(bytes.subarray(half.length))}`,
    }, bytes.subarray(half.length));
    expect(checksummed.status).toBe(404);
    expect((await tus(mallory, 'DELETE', url)).status).toBe(404);

    expect(await offsetOf(alice, url)).toBe(String(half.length));
    expect((await tus(alice, 'PATCH', url, { 'upload-offset': String(half.length), 'content-type': 'application/offset+octet-stream' }, bytes.subarray(half.length))).status).toBe(204);
    expect((await downloaded(alice, '/raw', 'private.bin'))!.equals(bytes)).toBe(true);
    expect(await listed(mallory, '/raw')).toEqual([]);
  });

  it("shows the client's metadata on HEAD, never the owner kept with the upload, whose id a client cannot set", async () => {
    const alice = await newUser(app);
    const b64 = (text: string) => Buffer.from(text).toString('base64');
    const created = await tus(alice, 'POST', `${app.baseUrl}/api/tus`, {
      'upload-length': '10',
      'upload-metadata': `filename ${b64('meta.txt')},folder ${b64('/raw')},userId ${b64('someone-else')},note ${b64('kept')}`,
    });
    expect(created.status).toBe(201);
    const url = new URL(created.headers.get('location')!, app.baseUrl).toString();
    const head = await tus(alice, 'HEAD', url);
    expect(head.status).toBe(200);
    const pairs = head.headers.get('upload-metadata')!.split(',').map((pair) => pair.trim().split(' '));
    const shown = Object.fromEntries(pairs.map(([key, value]) => [key, Buffer.from(value ?? '', 'base64').toString()]));
    expect(shown).toEqual({ filename: 'meta.txt', folder: '/raw', note: 'kept' });
  });

  it('shows a finished upload at Upload-Offset = Upload-Length; DELETE answers 204 and the linked file remains', async () => {
    const alice = await newUser(app);
    const bytes = randomBytes(MiB + 5);
    const url = await tusUpload(app, alice, bytes, { metadata: { filename: 'kept.bin', folder: '/tus' } }).done;
    const head = await tus(alice, 'HEAD', url);
    expect(head.status).toBe(200);
    expect(head.headers.get('upload-offset')).toBe(String(bytes.length));
    expect(head.headers.get('upload-length')).toBe(String(bytes.length));

    expect((await tus(alice, 'DELETE', url)).status).toBe(204);
    expect((await tus(alice, 'HEAD', url)).status).toBe(404);
    expect((await downloaded(alice, '/tus', 'kept.bin'))!.equals(bytes)).toBe(true);
  });

  it('keeps what arrived of a PATCH cut off mid-body: HEAD shows it, and the upload resumes from there to the same bytes', async () => {
    const alice = await newUser(app);
    const bytes = randomBytes(4 * MiB);
    const url = await create(alice, bytes.length, 'cut.bin');
    const sent = 2 * MiB + 12_345;
    await new Promise<void>((resolve) => {
      const headers = { ...TUS, authorization: `Bearer ${alice.token}`, 'upload-offset': '0', 'content-type': 'application/offset+octet-stream', 'content-length': String(bytes.length) };
      const cut = http.request(url, { method: 'PATCH', headers });
      cut.on('error', () => undefined);
      cut.write(bytes.subarray(0, sent), () => setTimeout(() => (cut.destroy(), resolve()), 200));
    });

    // the server ends the cut PATCH in its own time; until then its lock holds the upload
    const kept = await vi.waitFor(async () => {
      const offset = Number(await offsetOf(alice, url));
      expect(offset).toBeGreaterThan(MiB);
      return offset;
    }, { timeout: 10_000, interval: 100 });
    expect(kept).toBeLessThanOrEqual(sent);
    const rest = await tus(alice, 'PATCH', url, { 'upload-offset': String(kept), 'content-type': 'application/offset+octet-stream' }, bytes.subarray(kept));
    expect(rest.status).toBe(204);
    expect((await downloaded(alice, '/raw', 'cut.bin'))!.equals(bytes)).toBe(true);
  });

  it('answers HEAD with 404 or 410, not an offset, once an upload it had read was removed by another API node', async () => {
    const alice = await newUser(app);
    const url = await create(alice, 1000, 'gone.bin');
    expect(await offsetOf(alice, url)).toBe('0');
    const id = new URL(url).pathname.split('/').pop()!;
    for (const file of [id, `${id}.json`]) await fsp.rm(path.join(app.dataDir, 'tus', file));

    const head = await tus(alice, 'HEAD', url);
    expect([404, 410]).toContain(head.status);
    expect(head.headers.get('upload-offset')).toBeNull();
  });

  it('refuses a PATCH longer than what is left of the upload with 413, keeps no byte past its length, and takes the rest after', async () => {
    const alice = await newUser(app);
    const bytes = randomBytes(3 * MiB);
    const url = await create(alice, bytes.length, 'long.bin');
    const patch = (offset: number, body: Buffer) =>
      tus(alice, 'PATCH', url, { 'upload-offset': String(offset), 'content-type': 'application/offset+octet-stream' }, body);

    const tooLong = await patch(0, Buffer.concat([bytes, randomBytes(MiB)]));
    expect(tooLong.status).toBe(413);
    const kept = Number(await offsetOf(alice, url));
    expect(kept).toBeLessThanOrEqual(bytes.length);
    if (kept < bytes.length) expect((await patch(kept, bytes.subarray(kept))).status).toBe(204);
    expect((await downloaded(alice, '/raw', 'long.bin'))!.equals(bytes)).toBe(true);
  });

  it('checks Upload-Checksum on PATCH: a mismatch answers 460 and keeps the offset, a malformed digest 400, a match 204', async () => {
    const alice = await newUser(app);
    const bytes = randomBytes(300_000);
    const url = await create(alice, bytes.length, 'checked.bin');
    const patch = (offset: number, body: Buffer, digest: string) =>
      tus(alice, 'PATCH', url, { 'upload-offset': String(offset), 'content-type': 'application/offset+octet-stream', 'upload-checksum': `sha1 ${digest}` }, body);
    const [head, tail] = [bytes.subarray(0, 100_000), bytes.subarray(100_000)];

    const wrong = await patch(0, head, base64Sha1(tail));
    expect(wrong.status).toBe(460);
    expect(await offsetOf(alice, url)).toBe('0');
    for (const malformed of ['!!!', base64Sha1(head).slice(0, 20), Buffer.alloc(32).toString('base64')]) {
      const refused = await patch(0, head, malformed);
      expect({ malformed, status: refused.status }).toEqual({ malformed, status: 400 });
      expect(expectErrorBody(await refused.json()).message).toBe('Upload-Checksum must be "sha1 <base64 digest>"');
    }
    expect(await offsetOf(alice, url)).toBe('0');
    const right = await patch(0, head, base64Sha1(head));
    expect(right.status).toBe(204);
    expect(right.headers.get('upload-offset')).toBe(String(head.length));

    const garbled = Buffer.from(tail);
    garbled[0] = garbled[0]! ^ 0xff;
    expect((await patch(head.length, garbled, base64Sha1(tail))).status).toBe(460);
    expect(await offsetOf(alice, url)).toBe(String(head.length));
    const last = await patch(head.length, tail, base64Sha1(tail));
    expect(last.status).toBe(204);
    expect(last.headers.get('upload-offset')).toBe(String(bytes.length));
    expect((await downloaded(alice, '/raw', 'checked.bin'))!.equals(bytes)).toBe(true);
  });

  it("answers tus's own refusals as JSON errors with their tus status: a wrong offset, a missing length, a wrong content type", async () => {
    const alice = await newUser(app);
    const url = await create(alice, 1000, 'strict.bin');
    const octets = { 'content-type': 'application/offset+octet-stream' };
    const refusals = [
      await tus(alice, 'PATCH', url, { ...octets, 'upload-offset': '10' }, randomBytes(10)),
      await tus(alice, 'POST', `${app.baseUrl}/api/tus`, {}),
      await tus(alice, 'PATCH', url, { 'content-type': 'text/plain', 'upload-offset': '0' }, randomBytes(10)),
    ];
    const seen = await Promise.all(
      refusals.map(async (answer) => ({ status: answer.status, type: answer.headers.get('content-type'), code: (await answer.json()).error.code })),
    );
    expect(seen).toEqual([
      { status: 409, type: 'application/json; charset=utf-8', code: 'upload_state' },
      { status: 400, type: 'application/json; charset=utf-8', code: 'invalid_input' },
      { status: 400, type: 'application/json; charset=utf-8', code: 'invalid_input' },
    ]);
    expect(await offsetOf(alice, url)).toBe('0');
  });

  it('answers a PATCH on a full disk 507 insufficient_storage, logs it, and counts no unwritten byte in the offset', async () => {
    const alice = await newUser(app);
    const url = await create(alice, 1000, 'broken.bin');
    // the upload's data file becomes /dev/full: every write to it fails with ENOSPC
    const dataFile = path.join(app.dataDir, 'tus', new URL(url).pathname.split('/').pop()!);
    await fsp.rm(dataFile);
    await fsp.symlink('/dev/full', dataFile);
    const logged = vi.spyOn(app.services.logger, 'error');
    try {
      const answer = await tus(alice, 'PATCH', url, { 'content-type': 'application/offset+octet-stream', 'upload-offset': '0' }, randomBytes(1000));
      expect(answer.status).toBe(507);
      const body = await answer.json();
      expect(body).toEqual({ error: { code: 'insufficient_storage', message: expect.any(String) } });
      expect(logged).toHaveBeenCalledWith(expect.objectContaining({ err: expect.objectContaining({ code: 'ENOSPC' }), method: 'PATCH' }), 'tus request failed');
      expect((await tus(alice, 'HEAD', url)).headers.get('upload-offset')).toBe('0');
    } finally {
      logged.mockRestore();
    }
  });

  it('advertises the checksum extension and sha1 on OPTIONS', async () => {
    const alice = await newUser(app);
    const options = await tus(alice, 'OPTIONS', `${app.baseUrl}/api/tus`);
    expect(options.status).toBe(204);
    expect(options.headers.get('tus-version')).toContain('1.0.0');
    expect(options.headers.get('tus-extension')!.split(',').map((s) => s.trim())).toEqual(expect.arrayContaining(['creation', 'termination', 'checksum']));
    expect(options.headers.get('tus-checksum-algorithm')!.split(',').map((s) => s.trim())).toContain('sha1');
  });
});
