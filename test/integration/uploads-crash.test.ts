import { randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { availableProfiles, type ProfileName } from '../support/app.js';
import { sha1 } from '../support/files.js';
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
// and the file's size is the offset a client resumes from. (In the cluster, the dead server's tus lock
// would hold a resumed request for its 30 s lease: the bytes' side is the same, so embedded only.)
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

