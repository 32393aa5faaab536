import { randomBytes, randomUUID } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { availableProfiles, useApp } from '../support/app.js';
import { EMPTY_SHA1, expectErrorBody, newUser, sha1 } from '../support/files.js';
import { KiB, chunkOf, complete, putChunk, putChunks, shuffled, uploadChunked } from '../support/uploads.js';

const profiles = await availableProfiles('chunked uploads');
const CHUNK = 256 * KiB;

describe.each(profiles)('chunked uploads (%s profile)', (profile) => {
  const app = useApp(profile);

  const db = () => app.services.db.primary;
  const linksOf = (userId: string) => db()('user_files').where({ user_id: userId });
  const create = (client: Awaited<ReturnType<typeof newUser>>, body: Record<string, unknown>) => client.post('/api/uploads', body);

  it('reassembles shuffled chunks PUT four at a time into exactly the source bytes', async () => {
    const alice = await newUser(app);
    const source = randomBytes(10 * CHUNK + 1234);
    const { created, completed } = await uploadChunked(alice, source, { name: 'big.bin', folder: '/docs', chunkSize: CHUNK });
    expect(created.json).toMatchObject({ mode: 'chunks', chunkSize: CHUNK, chunkCount: 11, missing: [...Array(11).keys()] });
    expect(created.json.uploadId).toMatch(/^[0-9a-f-]{36}$/);
    expect(completed.status).toBe(201);
    expect(completed.json).toMatchObject({ name: 'big.bin', folder: '/docs', size: source.length, sha1: sha1(source) });
    expect(completed.json.id).toBeTypeOf('string');
    expect(new Date(completed.json.createdAt).toISOString()).toBe(completed.json.createdAt);
    const content = await alice.get(`/api/files/${completed.json.id}/content`);
    expect(content.status).toBe(200);
    expect(content.bytes.equals(source)).toBe(true);
  });

  it('reports exactly the missing chunks on GET, gives the same session back on a repeated create, and shrugs off a duplicate chunk', async () => {
    const alice = await newUser(app);
    const source = randomBytes(6 * CHUNK);
    const body = { name: 'resume.bin', size: source.length, sha1: sha1(source), chunkSize: CHUNK };
    const created = await create(alice, body);
    expect(created.status).toBe(201);
    const id = created.json.uploadId as string;
    await putChunks(alice, id, source, CHUNK, [0, 2, 5]);
    // the same chunk again, with the same bytes: still 204, still counted once
    expect((await putChunk(alice, id, 2, chunkOf(source, CHUNK, 2))).status).toBe(204);

    const state = await alice.get(`/api/uploads/${id}`);
    expect(state.status).toBe(200);
    expect(state.json).toMatchObject({ uploadId: id, name: 'resume.bin', size: source.length, chunkSize: CHUNK, chunkCount: 6, received: 3, missing: [1, 3, 4], state: 'receiving' });
    const again = await create(alice, body);
    expect(again.status).toBe(201);
    expect(again.json).toMatchObject({ uploadId: id, mode: 'chunks', missing: [1, 3, 4] });

    await putChunks(alice, id, source, CHUNK, [1, 3, 4]);
    const completed = await complete(alice, id);
    expect(completed.status).toBe(201);
    expect((await alice.get(`/api/files/${completed.json.id}/content`)).bytes.equals(source)).toBe(true);
    const done = await alice.get(`/api/uploads/${id}`);
    expect(done.json).toMatchObject({ state: 'complete', missing: [], file: { id: completed.json.id } });
  });

  it('stores a chunk sent with Content-Type application/json as raw bytes', async () => {
    const alice = await newUser(app);
    const source = Buffer.from(JSON.stringify({ hello: 'world', pad: 'x'.repeat(3000) }));
    const created = await create(alice, { name: 'data.json', size: source.length });
    expect(created.json.chunkCount).toBe(1);
    const put = await putChunk(alice, created.json.uploadId, 0, source, { 'content-type': 'application/json' });
    expect(put.status).toBe(204);
    const completed = await complete(alice, created.json.uploadId);
    expect(completed.status).toBe(201);
    expect(completed.json.sha1).toBe(sha1(source));
    expect((await alice.get(`/api/files/${completed.json.id}/content`)).bytes.equals(source)).toBe(true);
  });

  it('answers 409 with a top-level missing list when completing early, then 201, then 200 with the same file', async () => {
    const alice = await newUser(app);
    const source = randomBytes(4 * CHUNK);
    const id = (await create(alice, { name: 'twice.bin', size: source.length, chunkSize: CHUNK })).json.uploadId as string;
    await putChunks(alice, id, source, CHUNK, [1, 3]);
    const early = await alice.post(`/api/uploads/${id}/complete`);
    expect(early.status).toBe(409);
    expect(early.json.missing).toEqual([0, 2]);
    expectErrorBody(early.json);

    await putChunks(alice, id, source, CHUNK, [0, 2]);
    const first = await complete(alice, id);
    expect(first.status).toBe(201);
    const second = await alice.post(`/api/uploads/${id}/complete`);
    expect(second.status).toBe(200);
    expect(second.json).toEqual(first.json);
    expect(await linksOf(alice.userId)).toHaveLength(1);
  });

  it('answers 422 when the bytes do not match the declared sha1, links nothing, and keeps answering 422', async () => {
    const alice = await newUser(app);
    const source = randomBytes(3 * CHUNK);
    const declared = sha1(randomBytes(16));
    const id = (await create(alice, { name: 'liar.bin', size: source.length, sha1: declared, chunkSize: CHUNK })).json.uploadId as string;
    await putChunks(alice, id, source, CHUNK, [0, 1, 2]);
    const verdict = await complete(alice, id);
    expect(verdict.status).toBe(422);
    expect(expectErrorBody(verdict.json).code).toBe('hash_mismatch');
    expect(await linksOf(alice.userId)).toHaveLength(0);
    expect(await db()('files').whereIn('sha1', [sha1(source), declared])).toHaveLength(0);
    expect((await alice.get('/api/files')).json.files).toEqual([]);
    expect((await alice.post(`/api/uploads/${id}/complete`)).status).toBe(422);
    expect((await complete(alice, id)).status).toBe(422);
    expect(await linksOf(alice.userId)).toHaveLength(0);
  });

  it('cancels with DELETE → 204, after which the session answers 404 and its staged bytes are gone', async () => {
    const alice = await newUser(app);
    const source = randomBytes(2 * CHUNK);
    const id = (await create(alice, { name: 'gone.bin', size: source.length, chunkSize: CHUNK })).json.uploadId as string;
    await putChunks(alice, id, source, CHUNK, [0]);
    expect((await alice.request('DELETE', `/api/uploads/${id}`)).status).toBe(204);
    expect((await alice.get(`/api/uploads/${id}`)).status).toBe(404);
    expect((await putChunk(alice, id, 1, chunkOf(source, CHUNK, 1))).status).toBe(404);
    expect((await alice.post(`/api/uploads/${id}/complete`)).status).toBe(404);
    expect((await alice.request('DELETE', `/api/uploads/${id}`)).status).toBe(404);
    const staged = await fsp.readdir(path.join(app.dataDir, 'uploads')).catch(() => [] as string[]);
    expect(staged.filter((name) => name.startsWith(id))).toEqual([]);
  });

  it("answers 404 to every upload route for another user's, an unknown and a malformed upload id", async () => {
    const alice = await newUser(app);
    const mallory = await newUser(app);
    const source = randomBytes(CHUNK);
    const id = (await create(alice, { name: 'mine.bin', size: source.length, sha1: sha1(source), chunkSize: CHUNK })).json.uploadId as string;
    for (const [who, target] of [[mallory, id], [alice, randomUUID()], [alice, 'not-an-id'], [alice, `${id}x`], [alice, id.toUpperCase()]] as const) {
      const answers = [
        await who.get(`/api/uploads/${target}`),
        await putChunk(who, target, 0, source),
        await who.request('PATCH', `/api/uploads/${target}`, { json: { sha1: sha1(source) } }),
        await who.post(`/api/uploads/${target}/complete`),
        await who.post(`/api/uploads/${target}/proof`, { proof: 'a'.repeat(64) }),
        await who.request('DELETE', `/api/uploads/${target}`),
      ];
      expect({ target, statuses: answers.map((a) => a.status) }).toEqual({ target, statuses: [404, 404, 404, 404, 404, 404] });
      for (const answer of answers) expect(expectErrorBody(answer.json).code).toBe('not_found');
    }
    // mallory's attempts changed nothing: alice's session is intact and still hers
    expect((await alice.get(`/api/uploads/${id}`)).json).toMatchObject({ state: 'receiving', missing: [0] });
  });

  it("answers 404, not 400, to bad input for another user's, an unknown and a malformed upload id; 400 only to the owner", async () => {
    const alice = await newUser(app);
    const mallory = await newUser(app);
    const source = randomBytes(CHUNK);
    const id = (await create(alice, { name: 'mine.bin', size: source.length, chunkSize: CHUNK })).json.uploadId as string;
    const badInput = (who: typeof alice, target: string) => [
      putChunk(who, target, 0, source, { 'x-chunk-sha1': 'not-hex' }),
      who.request('PATCH', `/api/uploads/${target}`, { json: { sha1: 'NOT-A-SHA1' } }),
      who.request('PATCH', `/api/uploads/${target}`, { json: {} }),
      who.post(`/api/uploads/${target}/proof`, { proof: 'short' }),
      who.post(`/api/uploads/${target}/proof`),
    ];
    for (const [who, target] of [[mallory, id], [alice, randomUUID()], [alice, 'not-an-id']] as const) {
      const answers = await Promise.all(badInput(who, target));
      expect({ target, statuses: answers.map((a) => a.status) }).toEqual({ target, statuses: [404, 404, 404, 404, 404] });
      for (const answer of answers) expect(expectErrorBody(answer.json).code).toBe('not_found');
    }
    const own = await Promise.all(badInput(alice, id));
    expect(own.map((a) => [a.status, expectErrorBody(a.json).code])).toEqual(Array(5).fill([400, 'invalid_input']));
    expect((await alice.get(`/api/uploads/${id}`)).json).toMatchObject({ state: 'receiving', sha1: null, missing: [0] });
  });

  it('completes a 0-byte upload into an empty file, and answers 400 to a chunk sent to it', async () => {
    const alice = await newUser(app);
    const created = await create(alice, { name: 'empty.txt', size: 0, sha1: EMPTY_SHA1 });
    expect(created.status).toBe(201);
    expect(created.json).toMatchObject({ mode: 'chunks', chunkCount: 0, missing: [] });
    const chunk = await putChunk(alice, created.json.uploadId, 0, Buffer.alloc(0));
    expect(chunk.status).toBe(400);
    expect(expectErrorBody(chunk.json)).toMatchObject({ code: 'invalid_input', message: 'An empty upload takes no chunks: complete it.' });
    const completed = await complete(alice, created.json.uploadId);
    expect(completed.status).toBe(201);
    expect(completed.json).toMatchObject({ name: 'empty.txt', size: 0, sha1: EMPTY_SHA1 });
    const content = await alice.get(`/api/files/${completed.json.id}/content`);
    expect(content.status).toBe(200);
    expect(content.bytes.length).toBe(0);
  });

  it('accepts a sha1 declared later with PATCH and verifies the bytes against it', async () => {
    const alice = await newUser(app);
    const source = randomBytes(3 * CHUNK + 7);
    const created = await create(alice, { name: 'later.bin', size: source.length, chunkSize: CHUNK });
    const id = created.json.uploadId as string;
    await putChunks(alice, id, source, CHUNK, shuffled([0, 1, 2]));
    const declared = await alice.request('PATCH', `/api/uploads/${id}`, { json: { sha1: sha1(source) } });
    expect(declared.status).toBe(201);
    expect(declared.json).toMatchObject({ uploadId: id, mode: 'chunks', missing: [3] });
    expect((await alice.get(`/api/uploads/${id}`)).json.sha1).toBe(sha1(source));
    await putChunks(alice, id, source, CHUNK, [3]);
    const completed = await complete(alice, id);
    expect(completed.status).toBe(201);
    expect(completed.json.sha1).toBe(sha1(source));

    // a wrong sha1 declared later is caught at completion just the same
    const other = randomBytes(CHUNK);
    const second = (await create(alice, { name: 'later-wrong.bin', size: other.length, chunkSize: CHUNK })).json.uploadId as string;
    expect((await alice.request('PATCH', `/api/uploads/${second}`, { json: { sha1: sha1(source) } })).status).toBe(201);
    await putChunks(alice, second, other, CHUNK, [0]);
    expect((await complete(alice, second)).status).toBe(422);
    expect(await linksOf(alice.userId)).toHaveLength(1);
  });
});
