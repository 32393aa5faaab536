import { randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { RedisLocker } from '../../src/upload/tus-locker.redis.js';
import { availableProfiles, startApp, type ProfileName } from '../support/app.js';
import { ApiClient } from '../support/client.js';
import { sha1 } from '../support/files.js';
import { createTusUpload, tusPatch } from '../support/tus.js';
import { crashableServer, profileEnv, type Cleanups } from '../support/server-process.js';
import { MiB, chunkOf, complete, putChunk, putChunks } from '../support/uploads.js';

const profiles = await availableProfiles('upload crash recovery');

/** Bytes of DATA_DIR actually allocated to the staged file (it is sparse until chunks land). */
async function allocated(file: string): Promise<number> {
  return (await fsp.stat(file)).blocks * 512;
}

const cleanups: Cleanups = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

describe.each(profiles)('an upload survives kill -9 of the server (%s profile)', (profile: ProfileName) => {
  it('reports the finished chunks received and the torn one missing after a restart, then completes with the exact bytes', { timeout: 180_000 }, async () => {
    const { env } = await profileEnv(profile, cleanups);
    const { dataDir, client, killAndRestart } = await crashableServer(env, cleanups);
    const chunkSize = 8 * MiB;
    const source = randomBytes(4 * chunkSize + 3 * MiB);
    const created = await client.post('/api/uploads', { name: 'survivor.bin', size: source.length, sha1: sha1(source), chunkSize });
    expect(created.json).toMatchObject({ mode: 'chunks', chunkCount: 5 });
    const id = created.json.uploadId as string;
    await putChunks(client, id, source, chunkSize, [0, 1, 3]);

    // chunk 2: announce all 8 MiB, send 3 MiB, and kill the server while it waits for the rest
    const stagedFile = path.join(dataDir, 'uploads', `${id}.part`);
    const before = await allocated(stagedFile);
    const torn = http.request(`${client.baseUrl}/api/uploads/${id}/chunks/2`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${client.token}`, 'content-type': 'application/octet-stream', 'content-length': String(chunkSize) },
    });
    const tornOutcome = new Promise<string>((resolve) => {
      torn.once('response', (res) => resolve(`answered ${res.statusCode}`));
      torn.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
    });
    await new Promise<void>((resolve, reject) => torn.write(chunkOf(source, chunkSize, 2).subarray(0, 3 * MiB), (error) => (error ? reject(error) : resolve())));
    for (const deadline = Date.now() + 5000; Date.now() < deadline && (await allocated(stagedFile)) < before + 2 * MiB; ) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(await allocated(stagedFile)).toBeGreaterThan(before); // the server was writing chunk 2 when it died
    await killAndRestart();
    expect(await tornOutcome).not.toMatch(/^answered/);

    const resumed = await client.get(`/api/uploads/${id}`);
    expect(resumed.status).toBe(200);
    expect(resumed.json).toMatchObject({ uploadId: id, state: 'receiving', chunkCount: 5, received: 3, missing: [2, 4] });

    // in the cluster the dead server's claim on chunk 2 lasts until its lease ends: 409 with Retry-After
    for (let tries = 0; ; tries += 1) {
      const answer = await putChunk(client, id, 2, chunkOf(source, chunkSize, 2));
      if (answer.status === 204) break;
      expect(answer.status).toBe(409);
      expect(tries).toBeLessThan(10);
      await new Promise((resolve) => setTimeout(resolve, 1000 * Number(answer.headers.get('retry-after'))));
    }
    await putChunks(client, id, source, chunkSize, [4]);
    const completed = await complete(client, id);
    expect(completed.status).toBe(201);
    expect(completed.json).toMatchObject({ name: 'survivor.bin', size: source.length, sha1: sha1(source) });
    const content = await client.get(`/api/files/${completed.json.id}/content`);
    expect(content.status).toBe(200);
    expect(content.bytes.equals(source)).toBe(true);
  });
});

// The tus file store writes PATCH bodies in 1 MiB slots: what a killed server had written stays,
// and the file's size is the offset a client resumes from. (The bytes' side is the same in the cluster,
// whose side is the dead server's lock, below.)
describe('a tus upload survives kill -9 of the server (embedded profile)', () => {
  it('resumes from the offset of the bytes written before the kill, and finishes with the exact bytes and SHA-1', { timeout: 120_000 }, async () => {
    const { dataDir, client, killAndRestart } = await crashableServer({ FILESTORE_PROFILE: 'embedded' }, cleanups);
    const tusHeaders = { 'tus-resumable': '1.0.0', authorization: `Bearer ${client.token}` };
    const source = randomBytes(5 * MiB + 123);
    const metadata = `filename ${Buffer.from('tus-survivor.bin').toString('base64')},folder ${Buffer.from('/').toString('base64')}`;
    const created = await fetch(`${client.baseUrl}/api/tus`, { method: 'POST', headers: { ...tusHeaders, 'upload-length': String(source.length), 'upload-metadata': metadata } });
    expect(created.status).toBe(201);
    const url = new URL(created.headers.get('location')!, client.baseUrl).toString();
    const patch = (from: number, body: Buffer) =>
      fetch(url, { method: 'PATCH', headers: { ...tusHeaders, 'upload-offset': String(from), 'content-type': 'application/offset+octet-stream' }, body: new Uint8Array(body) });
    expect((await patch(0, source.subarray(0, 2 * MiB))).status).toBe(204);

    // the rest announced, 1.5 MiB of it sent: the server writes one 1 MiB slot, then is killed waiting
    const stored = path.join(dataDir, 'tus', new URL(url).pathname.split('/').pop()!);
    const torn = http.request(url, {
      method: 'PATCH',
      headers: { ...tusHeaders, 'upload-offset': String(2 * MiB), 'content-type': 'application/offset+octet-stream', 'content-length': String(source.length - 2 * MiB) },
    });
    torn.once('error', () => undefined);
    torn.write(source.subarray(2 * MiB, 3.5 * MiB));
    for (const deadline = Date.now() + 5000; Date.now() < deadline && (await fsp.stat(stored)).size < 3 * MiB; ) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect((await fsp.stat(stored)).size).toBe(3 * MiB);
    await killAndRestart();

    const head = await fetch(url, { method: 'HEAD', headers: tusHeaders });
    expect(head.headers.get('upload-offset')).toBe(String(3 * MiB));
    const finished = await patch(3 * MiB, source.subarray(3 * MiB));
    expect(finished.status).toBe(204);
    const fileId = finished.headers.get('filestore-file-id');
    expect(fileId).toBeTruthy();
    const listed = await client.get('/api/files?folder=%2F');
    expect(listed.json.files).toEqual([expect.objectContaining({ id: fileId, name: 'tus-survivor.bin', size: source.length, sha1: sha1(source) })]);
    expect((await client.get(`/api/files/${fileId}/content`)).bytes.equals(source)).toBe(true);
  });
});


// The dead server's tus lock lives in Redis until its lease runs out: a client resuming on another API
// process waits that long (HEAD takes the lock too), while a live holder keeps it by renewing.
describe.skipIf(!profiles.includes('cluster'))('a tus upload resumes on another API process after kill -9 of the one writing it (cluster profile)', () => {
  it('holds the upload while the writer lives past a lease, then lets a HEAD on the other through within 7 s of the kill, and finishes with the exact bytes', { timeout: 120_000 }, async () => {
    const { env } = await profileEnv('cluster', cleanups);
    const { dataDir, client, kill } = await crashableServer(env, cleanups);
    // the other API process: same database, Redis keys and DATA_DIR; waiting longer than the old 30 s lease would not tell
    const other = await startApp('cluster', { DATA_DIR: dataDir, DB_PRIMARY_URL: env.DB_PRIMARY_URL!, DB_REPLICA_URL: env.DB_REPLICA_URL!, REDIS_KEY_PREFIX: env.REDIS_KEY_PREFIX!, TUS_LOCK_TIMEOUT_SECONDS: '15' });
    cleanups.push(() => other.close());
    const onOther = new ApiClient(other.baseUrl, client.token);
    const tusHeaders = { 'tus-resumable': '1.0.0', authorization: `Bearer ${client.token}` };
    const source = randomBytes(4 * MiB);
    const uploadPath = new URL(await createTusUpload(client.baseUrl, client, source.length, { filename: 'resumed-elsewhere.bin' })).pathname;
    const id = path.basename(uploadPath);

    const writing = http.request(`${client.baseUrl}${uploadPath}`, {
      method: 'PATCH',
      headers: { ...tusHeaders, 'upload-offset': '0', 'content-type': 'application/offset+octet-stream', 'content-length': String(source.length) },
    });
    writing.once('error', () => undefined);
    writing.write(source.subarray(0, 1.5 * MiB));
    const stored = path.join(dataDir, 'tus', id);
    await vi.waitFor(async () => expect((await fsp.stat(stored)).size).toBeGreaterThanOrEqual(MiB), { timeout: 5000, interval: 20 });

    // looked at without asking the writer to let go (a HEAD would: the writer would stop and answer)
    const redis = new Redis(env.REDIS_URL!);
    cleanups.push(async () => redis.disconnect());
    const onlooker = new RedisLocker(redis, redis.duplicate(), env.REDIS_KEY_PREFIX!);
    cleanups.push(() => onlooker.close());
    await new Promise((resolve) => setTimeout(resolve, 7000));
    expect(await onlooker.lockIfFree(id)).toBeNull();

    await kill();
    const killedAt = performance.now();
    const head = await fetch(`${other.baseUrl}${uploadPath}`, { method: 'HEAD', headers: tusHeaders });
    const waited = performance.now() - killedAt;
    expect(head.status).toBe(200);
    expect(waited).toBeLessThan(7000);
    // the dead writer's lock did hold it: its last renewal was at most a third of the lease before the kill
    expect(waited).toBeGreaterThan(3000);
    const offset = Number(head.headers.get('upload-offset'));
    expect(offset).toBeGreaterThanOrEqual(MiB);

    const finished = await tusPatch(client, `${other.baseUrl}${uploadPath}`, offset, source.subarray(offset));
    expect(finished.status).toBe(204);
    const fileId = finished.headers.get('filestore-file-id');
    expect((await onOther.get(`/api/files/${fileId}/content`)).bytes.equals(source)).toBe(true);
  });
});

// A writer frozen past its lease (SIGSTOP: a VM paused, a process swapped out) has lost its tus lock to
// whoever took the upload meanwhile; once it runs again it must not write on into that holder's upload.
describe.skipIf(!profiles.includes('cluster'))('a tus writer frozen past its lock lease (cluster profile)', () => {
  it('writes nothing more once thawed and answers 423, and the upload then resumes from what it had written, to the exact bytes', { timeout: 120_000 }, async () => {
    const { env } = await profileEnv('cluster', cleanups);
    const { dataDir, client, pid } = await crashableServer(env, cleanups);
    const tusHeaders = { 'tus-resumable': '1.0.0', authorization: `Bearer ${client.token}` };
    const source = randomBytes(4 * MiB);
    const url = await createTusUpload(client.baseUrl, client, source.length, { filename: 'frozen-writer.bin' });
    const id = path.basename(url);
    const writing = http.request(url, {
      method: 'PATCH',
      headers: { ...tusHeaders, 'upload-offset': '0', 'content-type': 'application/offset+octet-stream', 'content-length': String(source.length) },
    });
    const answered = new Promise<http.IncomingMessage>((resolve, reject) => writing.once('response', resolve).once('error', reject));
    writing.write(source.subarray(0, 1.5 * MiB));
    const stored = path.join(dataDir, 'tus', id);
    await vi.waitFor(async () => expect((await fsp.stat(stored)).size).toBe(MiB), { timeout: 5000, interval: 20 });

    process.kill(pid()!, 'SIGSTOP');
    cleanups.push(async () => process.kill(pid()!, 'SIGCONT'));
    const redis = new Redis(env.REDIS_URL!);
    cleanups.push(async () => redis.disconnect());
    const elsewhere = new RedisLocker(redis, redis.duplicate(), env.REDIS_KEY_PREFIX!);
    cleanups.push(() => elsewhere.close());
    let taken = await elsewhere.lockIfFree(id);
    for (const deadline = Date.now() + 10_000; !taken && Date.now() < deadline; taken = await elsewhere.lockIfFree(id)) {
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expect(taken).not.toBeNull();

    process.kill(pid()!, 'SIGCONT');
    writing.end(source.subarray(1.5 * MiB));
    const response = await answered;
    response.resume();
    expect(response.statusCode).toBe(423);
    expect((await fsp.stat(stored)).size).toBe(MiB);

    await taken!.unlock();
    const head = await fetch(url, { method: 'HEAD', headers: tusHeaders });
    expect(head.headers.get('upload-offset')).toBe(String(MiB));
    const finished = await tusPatch(client, url, MiB, source.subarray(MiB));
    expect(finished.status).toBe(204);
    const fileId = finished.headers.get('filestore-file-id');
    expect((await client.get(`/api/files/${fileId}/content`)).bytes.equals(source)).toBe(true);
  });
});
