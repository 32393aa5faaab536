import { randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { availableProfiles, useApp } from '../support/app.js';
import { expectErrorBody, newUser, sha1 } from '../support/files.js';
import { KiB, MiB, chunkOf, complete, putChunk, putChunks } from '../support/uploads.js';

const profiles = await availableProfiles('chunk refusals');
const CHUNK = 256 * KiB;

// What a chunk PUT refuses (wrong length, a chunk another request is writing, a full disk, a wrong
// X-Chunk-Sha1), and that a refused chunk stays missing while what was received stays intact.
describe.each(profiles)('chunk refusals (%s profile)', (profile) => {
  const app = useApp(profile);

  const create = (client: Awaited<ReturnType<typeof newUser>>, body: Record<string, unknown>) => client.post('/api/uploads', body);
  it('answers 400 to chunks of the wrong length and to indexes out of range, and those chunks stay missing', async () => {
    const alice = await newUser(app);
    const source = randomBytes(2 * CHUNK + 100);
    const id = (await create(alice, { name: 'lengths.bin', size: source.length, chunkSize: CHUNK })).json.uploadId as string;
    const full = chunkOf(source, CHUNK, 0);
    for (const [index, bytes] of [
      [0, full.subarray(0, CHUNK - 1)],
      [0, Buffer.concat([full, Buffer.from([1])])],
      [0, Buffer.alloc(0)],
      [2, source.subarray(0, CHUNK)], // the last chunk is only 100 bytes long
      [3, full],
      [-1, full],
      ['1.5', full],
      ['x', full],
    ] as const) {
      const answer = await putChunk(alice, id, index, bytes);
      expect({ index, length: bytes.length, status: answer.status }).toEqual({ index, length: bytes.length, status: 400 });
      expectErrorBody(answer.json);
    }
    expect((await alice.get(`/api/uploads/${id}`)).json).toMatchObject({ received: 0, missing: [0, 1, 2] });
  });

  it('answers 400 to an over-long chunk and keeps its keep-alive connection usable for the next request', async () => {
    const alice = await newUser(app);
    const id = (await create(alice, { name: 'overlong.bin', size: 2 * CHUNK, chunkSize: CHUNK })).json.uploadId as string;
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const send = (method: string, path: string, body = Buffer.alloc(0)) =>
      new Promise<number>((resolve, reject) => {
        const headers = { authorization: `Bearer ${alice.token}`, 'content-length': String(body.length) };
        const req = http.request(app.baseUrl + path, { method, agent, headers, timeout: 5000 }, (res) => {
          res.resume().on('end', () => resolve(res.statusCode!));
        });
        req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer within 5 s`)));
        req.on('error', reject);
        req.end(body);
      });
    try {
      expect(await send('PUT', `/api/uploads/${id}/chunks/0`, randomBytes(4 * CHUNK))).toBe(400);
      expect(await send('GET', `/api/uploads/${id}`)).toBe(200);
      expect(await send('PUT', `/api/uploads/${id}/chunks/1`, randomBytes(CHUNK))).toBe(204);
    } finally {
      agent.destroy();
    }
  });

  it('answers 409 to a second request for a chunk another request is still writing, and keeps the first one\'s bytes', async () => {
    const alice = await newUser(app);
    const source = randomBytes(2 * CHUNK);
    const id = (await create(alice, { name: 'twice.bin', size: source.length, sha1: sha1(source), chunkSize: CHUNK })).json.uploadId as string;
    let finishFirst = () => {};
    const first = new Promise<number>((resolve, reject) => {
      const req = http.request(`${app.baseUrl}/api/uploads/${id}/chunks/0`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${alice.token}`, 'content-length': String(CHUNK) },
      });
      req.on('response', (res) => res.resume().on('end', () => resolve(res.statusCode!)));
      req.on('error', reject);
      req.write(chunkOf(source, CHUNK, 0).subarray(0, CHUNK / 2));
      finishFirst = () => req.end(chunkOf(source, CHUNK, 0).subarray(CHUNK / 2));
    });
    // the first request is now inside its body; half of it has long arrived
    await new Promise((resolve) => setTimeout(resolve, 500));

    const second = await putChunk(alice, id, 0, randomBytes(CHUNK));
    expect(second.status).toBe(409);
    expect(expectErrorBody(second.json).code).toBe('upload_state');
    expect(Number(second.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    finishFirst();
    expect(await first).toBe(204);
    expect((await putChunk(alice, id, 1, chunkOf(source, CHUNK, 1))).status).toBe(204);
    const completed = await complete(alice, id);
    expect(completed.status).toBe(201);
    expect((await alice.get(`/api/files/${completed.json.id}/content`)).bytes.equals(source)).toBe(true);
  });

  it('answers 507 insufficient_storage when the disk is full, and the chunk stays missing', async () => {
    const alice = await newUser(app);
    const source = randomBytes(2 * CHUNK);
    const id = (await create(alice, { name: 'full.bin', size: source.length, chunkSize: CHUNK })).json.uploadId as string;
    // the staged file becomes /dev/full: every write to it fails with ENOSPC
    const staged = path.join(app.dataDir, 'uploads', `${id}.part`);
    await fsp.rm(staged);
    await fsp.symlink('/dev/full', staged);

    const answer = await putChunk(alice, id, 0, chunkOf(source, CHUNK, 0));
    expect(answer.status).toBe(507);
    expect(expectErrorBody(answer.json).code).toBe('insufficient_storage');
    expect((await alice.get(`/api/uploads/${id}`)).json.missing).toEqual([0, 1]);
  });

  it('answers 400 to a chunk body far longer than the chunk without reading the rest of it, and the chunk stays missing', { timeout: 30_000 }, async () => {
    const alice = await newUser(app);
    const id = (await create(alice, { name: 'endless.bin', size: 2 * CHUNK, chunkSize: CHUNK })).json.uploadId as string;
    const declared = 256 * MiB;
    const answer = await new Promise<{ status: number; sent: number; code: string }>((resolve, reject) => {
      const req = http.request(`${app.baseUrl}/api/uploads/${id}/chunks/0`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${alice.token}`, 'content-length': String(declared) },
      });
      let sent = 0;
      const piece = randomBytes(256 * KiB);
      const pump = () => {
        while (sent < declared && req.write(piece)) sent += piece.length;
      };
      req.on('drain', pump);
      req.on('response', (res) => {
        const pieces: Buffer[] = [];
        res.on('data', (data: Buffer) => pieces.push(data));
        res.on('end', () => {
          req.destroy();
          resolve({ status: res.statusCode!, sent, code: JSON.parse(Buffer.concat(pieces).toString()).error.code });
        });
      });
      // the server closing mid-body is expected once it has answered
      req.on('error', (error: NodeJS.ErrnoException) => (['ECONNRESET', 'EPIPE'].includes(error.code ?? '') ? undefined : reject(error)));
      pump();
    });
    expect(answer.status).toBe(400);
    expect(answer.code).toBe('invalid_input');
    expect(answer.sent).toBeLessThan(declared / 4);
    const state = await alice.get(`/api/uploads/${id}`);
    expect(state.json.missing).toEqual([0, 1]);
  });

  it('answers 400 to a chunkSize outside 256 KiB–64 MiB', async () => {
    const alice = await newUser(app);
    for (const chunkSize of [256 * KiB - 1, 64 * MiB + 1, 0, -CHUNK]) {
      expect((await create(alice, { name: 'c.bin', size: 10 * MiB, chunkSize })).status).toBe(400);
    }
    expect((await create(alice, { name: 'c.bin', size: 10 * MiB, chunkSize: 64 * MiB })).status).toBe(201);
    expect((await create(alice, { name: 'd.bin', size: 10 * MiB, chunkSize: 256 * KiB })).status).toBe(201);
  });

  it('answers 413 payload_too_large to a size above MAX_UPLOAD_BYTES (64 GiB by default), as POST /api/files and tus do', async () => {
    const alice = await newUser(app);
    const tooLarge = await create(alice, { name: 'huge.bin', size: 64 * 1024 * MiB + 1 });
    expect(tooLarge.status).toBe(413);
    expect(expectErrorBody(tooLarge.json).code).toBe('payload_too_large');
  });

  it('answers 422 to a chunk that does not match its X-Chunk-Sha1 (400 to a malformed one) and keeps it missing', async () => {
    const alice = await newUser(app);
    const source = randomBytes(2 * CHUNK);
    const id = (await create(alice, { name: 'checked.bin', size: source.length, chunkSize: CHUNK })).json.uploadId as string;
    const chunk = chunkOf(source, CHUNK, 1);
    const wrong = await putChunk(alice, id, 1, chunk, { 'x-chunk-sha1': sha1(chunkOf(source, CHUNK, 0)) });
    expect(wrong.status).toBe(422);
    expect(expectErrorBody(wrong.json).code).toBe('chunk_hash_mismatch');
    expect((await alice.get(`/api/uploads/${id}`)).json).toMatchObject({ received: 0, missing: [0, 1] });
    const malformed = await putChunk(alice, id, 1, chunk, { 'x-chunk-sha1': 'not-a-sha1' });
    expect(malformed.status).toBe(400);
    expect(expectErrorBody(malformed.json).message).toMatch(/^X-Chunk-Sha1: /);
    expect((await alice.get(`/api/uploads/${id}`)).json).toMatchObject({ received: 0, missing: [0, 1] });
    expect((await putChunk(alice, id, 1, chunk, { 'x-chunk-sha1': sha1(chunk) })).status).toBe(204);
    expect((await alice.get(`/api/uploads/${id}`)).json).toMatchObject({ received: 1, missing: [0] });
  });

  it('completes with the right SHA-1 after failed first attempts at the chunk the hash stands at (other bytes, a short body)', async () => {
    const alice = await newUser(app);
    const chunkSize = 2 * MiB; // two 1 MiB slots: the hash takes in the first before the chunk fails
    const source = randomBytes(3 * chunkSize);
    const id = (await create(alice, { name: 'retried.bin', size: source.length, sha1: sha1(source), chunkSize })).json.uploadId as string;
    const first = chunkOf(source, chunkSize, 0);
    const other = randomBytes(chunkSize);

    expect((await putChunk(alice, id, 0, other, { 'x-chunk-sha1': sha1(first) })).status).toBe(422);
    expect((await putChunk(alice, id, 0, other.subarray(0, chunkSize - 1))).status).toBe(400);
    await putChunks(alice, id, source, chunkSize, [0, 2, 1]);
    const completed = await complete(alice, id);
    expect(completed.status).toBe(201);
    expect(completed.json.sha1).toBe(sha1(source));
    expect((await alice.get(`/api/files/${completed.json.id}/content`)).bytes.equals(source)).toBe(true);
  });

  it('keeps a received chunk intact when it is sent again with a wrong X-Chunk-Sha1 or a wrong length', async () => {
    const alice = await newUser(app);
    const source = randomBytes(2 * CHUNK);
    const id = (await create(alice, { name: 'retry.bin', size: source.length, chunkSize: CHUNK })).json.uploadId as string;
    const good = chunkOf(source, CHUNK, 0);
    await putChunks(alice, id, source, CHUNK, [0, 1]);
    const garbled = randomBytes(CHUNK);
    expect((await putChunk(alice, id, 0, garbled, { 'x-chunk-sha1': sha1(good) })).status).toBe(422);
    expect((await putChunk(alice, id, 0, garbled.subarray(1))).status).toBe(400);
    expect((await putChunk(alice, id, 0, Buffer.concat([garbled, garbled]))).status).toBe(400);
    expect((await alice.get(`/api/uploads/${id}`)).json).toMatchObject({ received: 2, missing: [] });
    const completed = await complete(alice, id);
    expect(completed.status).toBe(201);
    expect(completed.json.sha1).toBe(sha1(source));
    expect((await alice.get(`/api/files/${completed.json.id}/content`)).bytes.equals(source)).toBe(true);
  });
});

describe.each(profiles)('chunk failures in the log (%s profile)', (profile) => {
  const logLines: Array<Record<string, unknown>> = [];
  const app = useApp(profile, {}, { logLines });
  const linesOf = (reqId: string) => logLines.filter((line) => line.reqId === reqId);

  it('logs a chunk the client abandons midway as an aborted request (warn), not as a server error, and it stays missing', async () => {
    const alice = await newUser(app);
    const source = randomBytes(2 * CHUNK);
    const id = (await alice.post('/api/uploads', { name: 'abandoned.bin', size: source.length, chunkSize: CHUNK })).json.uploadId as string;
    const req = http.request(`${app.baseUrl}/api/uploads/${id}/chunks/0`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${alice.token}`, 'content-length': String(CHUNK), 'x-request-id': `abandoned-${id}` },
    });
    req.on('error', () => undefined);
    req.write(chunkOf(source, CHUNK, 0).subarray(0, CHUNK / 2));
    await new Promise((resolve) => setTimeout(resolve, 300));
    req.destroy();

    // once the chunk can be sent again, the abandoned request has been answered and logged
    await expect.poll(async () => (await putChunk(alice, id, 1, chunkOf(source, CHUNK, 1))).status).toBe(204);
    await expect.poll(() => linesOf(`abandoned-${id}`).map((line) => line.msg)).toContain('request aborted');
    expect(linesOf(`abandoned-${id}`).filter((line) => Number(line.level) >= 50)).toEqual([]);
    expect((await alice.get(`/api/uploads/${id}`)).json).toMatchObject({ missing: [0] });
  });

  it('still logs a chunk the server fails to write at level 50', async () => {
    const alice = await newUser(app);
    const id = (await alice.post('/api/uploads', { name: 'broken.bin', size: CHUNK, chunkSize: CHUNK })).json.uploadId as string;
    // the staged file replaced by a directory: opening it for writing fails on the server's side
    const staged = path.join(app.dataDir, 'uploads', `${id}.part`);
    await fsp.rm(staged);
    await fsp.mkdir(staged);
    const answer = await putChunk(alice, id, 0, randomBytes(CHUNK), { 'x-request-id': `broken-${id}` });
    expect(answer.status).toBe(500);
    expect(expectErrorBody(answer.json).code).toBe('internal');
    await expect.poll(() => linesOf(`broken-${id}`).filter((line) => line.level === 50).map((line) => line.msg)).toEqual(['request failed']);
  });
});
