import { randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { availableProfiles, useApp, type RunningApp } from '../support/app.js';
import { blobFiles, expectErrorBody, newUser, sha1 } from '../support/files.js';
import { MiB, chunkOf, complete, completeRacingCancel, putChunks, shuffled, uploadChunked } from '../support/uploads.js';

const profiles = await availableProfiles('concurrent uploads');

/** The staged upload files (`<id>.part`) in the app's DATA_DIR. */
const stagedFiles = async (app: RunningApp) =>
  (await fsp.readdir(path.join(app.dataDir, 'uploads')).catch(() => [] as string[])).filter((name) => name.endsWith('.part'));

describe.each(profiles)('concurrent chunked uploads of the same content (%s profile)', (profile) => {
  const app = useApp(profile);

  const db = () => app.services.db.primary;
  const blobsOf = async (hash: string) => (await blobFiles(app)).filter((file) => path.basename(file).split('.')[0] === hash);

  it('stores ~50 MB uploaded by two users at the same time once: one files row, one blob, two user_files rows', { timeout: 180_000 }, async () => {
    const users = [await newUser(app), await newUser(app)];
    const source = randomBytes(50 * MiB + 12_345);
    const hash = sha1(source);
    const chunkSize = 4 * MiB;

    // both sessions exist before either has any content, so neither is offered a proof
    const sessions = await Promise.all(
      users.map((user, i) => user.post('/api/uploads', { name: `same-${i}.bin`, folder: `/race-${i}`, size: source.length, sha1: hash, chunkSize })),
    );
    for (const session of sessions) expect(session.json).toMatchObject({ mode: 'chunks', chunkCount: 13 });
    const ids = sessions.map((session) => session.json.uploadId as string);

    await Promise.all(users.map((user, i) => putChunks(user, ids[i]!, source, chunkSize, shuffled([...Array(13).keys()]))));
    const completed = await Promise.all(users.map((user, i) => complete(user, ids[i]!)));
    expect(completed.map((answer) => answer.status)).toEqual([201, 201]);
    expect(completed.map((answer) => answer.json.sha1)).toEqual([hash, hash]);
    expect(completed[0]!.json.id).not.toBe(completed[1]!.json.id);

    const rows = await db()('files').where({ sha1: hash });
    expect(rows).toHaveLength(1);
    expect(Number(rows[0].size)).toBe(source.length);
    const links = await db()('user_files').where({ file_id: rows[0].id });
    expect(links.map((row: { user_id: string }) => row.user_id).sort()).toEqual(users.map((user) => user.userId).sort());

    const blobs = await blobsOf(hash);
    expect(blobs).toHaveLength(1);
    expect((await fsp.stat(path.join(app.dataDir, 'blobs', blobs[0]!))).size).toBe(source.length);
    expect(await stagedFiles(app)).toEqual([]);

    for (const [i, user] of users.entries()) {
      const content = await user.get(`/api/files/${completed[i]!.json.id}/content`);
      expect({ status: content.status, error: content.json?.error }).toEqual({ status: 200, error: undefined });
      expect(content.bytes.equals(source)).toBe(true);
    }
  });
});

// 4 uploads × 4 chunks of 4 MiB in flight want far more memory ahead of their hashes than the 24 MiB a
// process keeps: slots are evicted for nearer ones, writers wait for room, the rest is read back.
describe.each(profiles)('concurrent chunked uploads of different content (%s profile)', (profile) => {
  const app = useApp(profile);

  it('completes four 32 MiB uploads sent at once, in shuffled chunk order, each with its exact bytes and SHA-1', { timeout: 180_000 }, async () => {
    const user = await newUser(app);
    const sources = Array.from({ length: 4 }, () => randomBytes(32 * MiB + 4097));
    const uploads = await Promise.all(sources.map((source, i) => uploadChunked(user, source, { name: `many-${i}.bin`, folder: '/many', chunkSize: 4 * MiB })));

    for (const [i, { completed }] of uploads.entries()) {
      expect(completed.status).toBe(201);
      expect(completed.json.sha1).toBe(sha1(sources[i]!));
      expect((await user.get(`/api/files/${completed.json.id}/content`)).bytes.equals(sources[i]!)).toBe(true);
    }
  });

  it('answers 404 to a chunk still arriving when its upload is cancelled, and keeps no record of that chunk', async () => {
    const alice = await newUser(app);
    const chunkSize = 4 * MiB;
    const source = randomBytes(2 * chunkSize);
    const id = (await alice.post('/api/uploads', { name: 'cancelled.bin', size: source.length, chunkSize })).json.uploadId as string;
    const chunk = chunkOf(source, chunkSize, 0);
    let sendRest = () => {};
    const answer = new Promise<number>((resolve, reject) => {
      const req = http.request(`${app.baseUrl}/api/uploads/${id}/chunks/0`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${alice.token}`, 'content-length': String(chunk.length) },
      });
      req.on('response', (res) => res.resume().on('end', () => resolve(res.statusCode!)));
      req.on('error', reject);
      req.write(chunk.subarray(0, 3 * MiB));
      sendRest = () => req.end(chunk.subarray(3 * MiB));
    });
    // the chunk is being received (most of it written) when its upload is cancelled
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect((await alice.request('DELETE', `/api/uploads/${id}`)).status).toBe(204);
    sendRest();

    expect(await answer).toBe(404);
    expect((await alice.get(`/api/uploads/${id}`)).status).toBe(404);
    if (profile === 'embedded') expect(await app.services.db.primary('upload_chunks').where({ upload_id: id })).toEqual([]);
    expect(await fsp.readdir(path.join(app.dataDir, 'uploads'))).not.toContain(`${id}.part`);
  });
});

// Requests on one upload that arrive together: its session row decides which goes first.
describe.each(profiles)('requests racing on one upload (%s profile)', (profile) => {
  const app = useApp(profile);

  /** A 6 MiB upload with its sha1 declared and every chunk received, ready to complete. */
  const receivedUpload = async (user: Awaited<ReturnType<typeof newUser>>, name: string) => {
    const chunkSize = 2 * MiB;
    const source = randomBytes(3 * chunkSize);
    const id = (await user.post('/api/uploads', { name, size: source.length, sha1: sha1(source), chunkSize })).json.uploadId as string;
    await putChunks(user, id, source, chunkSize, [0, 1, 2]);
    return { id, source };
  };

  it('answers 201 to exactly one of five simultaneous completes and 200 with the same file to the others', async () => {
    const alice = await newUser(app);
    const { id, source } = await receivedUpload(alice, 'five.bin');

    const answers = await Promise.all(Array.from({ length: 5 }, () => complete(alice, id)));
    expect(answers.map((answer) => answer.status).sort()).toEqual([200, 200, 200, 200, 201]);
    expect(new Set(answers.map((answer) => answer.json.id))).toEqual(new Set([answers[0]!.json.id]));
    expect(await app.services.db.primary('files').where({ sha1: sha1(source) })).toHaveLength(1);
    expect((await complete(alice, id)).status).toBe(200);
  });

  it('answers a DELETE racing complete 204 (complete then 404) or, once verification began, 409 upload_state (complete 201), never 500, and leaves nothing half done', async () => {
    const alice = await newUser(app);
    for (let run = 0; run < 12; run++) {
      const { id, source } = await receivedUpload(alice, `raced-${run}.bin`);
      const { completed, cancelled } = await completeRacingCancel(alice, alice, id, run - 4);
      // a DELETE after the completion ended is a plain cancel of a completed upload: the file stays
      const outcomes = ['complete 201, DELETE 409', 'complete 201, DELETE 204', 'complete 404, DELETE 204'];
      expect(outcomes, `run ${run}`).toContain(`complete ${completed.status}, DELETE ${cancelled.status}`);
      if (cancelled.status === 409) expect(expectErrorBody(cancelled.json).code).toBe('upload_state');
      const linked = await app.services.db.primary('files').where({ sha1: sha1(source) });
      if (completed.status === 201) {
        expect((await alice.get(`/api/files/${completed.json.id}/content`)).bytes.equals(source)).toBe(true);
        expect(linked).toHaveLength(1);
      } else {
        expect(expectErrorBody(completed.json).code).toBe('not_found');
        expect((await alice.get(`/api/uploads/${id}`)).status).toBe(404);
        expect(linked).toEqual([]);
      }
      expect(await stagedFiles(app)).not.toContain(`${id}.part`);
    }
  });
});
