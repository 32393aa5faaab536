import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { availableProfiles, useApp } from '../support/app.js';
import { EMPTY_SHA1, expectErrorBody, newUser, plainGet, sha1 } from '../support/files.js';

const profiles = await availableProfiles('files');

describe.each(profiles)('files API (%s profile)', (profile) => {
  const app = useApp(profile);

  describe('upload and metadata', () => {
    it('answers 201 with id, name, folder "/", size, sha1 and createdAt, and GET /api/files/:id returns the same metadata', async () => {
      const alice = await newUser(app);
      const bytes = randomBytes(4096);
      const up = await alice.upload('/api/files', { name: 'report.pdf', bytes });
      expect(up.status).toBe(201);
      expect(up.json).toMatchObject({ name: 'report.pdf', folder: '/', size: 4096, sha1: sha1(bytes) });
      expect(up.json.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      expect(new Date(up.json.createdAt).toISOString()).toBe(up.json.createdAt);

      const meta = await alice.get(`/api/files/${up.json.id}`);
      expect(meta.status).toBe(200);
      expect(meta.json).toMatchObject({ id: up.json.id, name: 'report.pdf', folder: '/', size: 4096, sha1: sha1(bytes), createdAt: up.json.createdAt });

      const row = await app.services.db.primary('user_files').where({ id: up.json.id }).first();
      expect(row).toMatchObject({ user_id: alice.userId, name: 'report.pdf', folder: '/', status: 'available' });
      expect(Number(row.size)).toBe(4096);
    });

    it('stores the upload in the folder given by the `folder` field, creating it', async () => {
      const alice = await newUser(app);
      const up = await alice.upload('/api/files', { name: 'a.txt', bytes: Buffer.from('in a folder') }, { folder: '/docs/2024' });
      expect(up.status).toBe(201);
      expect(up.json.folder).toBe('/docs/2024');
      const listing = await alice.get('/api/files?folder=/docs/2024');
      expect(listing.status).toBe(200);
      expect(listing.json.files.map((f: { id: string }) => f.id)).toEqual([up.json.id]);
    });
  });

  describe('download', () => {
    it('returns the bytes with Content-Type (never to be sniffed), attachment Content-Disposition, ETag "<sha1>" and Accept-Ranges', async () => {
      const alice = await newUser(app);
      const bytes = Buffer.from('hello, plain text\n');
      const up = await alice.upload('/api/files', { name: 'notes.txt', bytes });
      const res = await alice.get(`/api/files/${up.json.id}/content`);
      expect(res.status).toBe(200);
      expect(res.bytes.equals(bytes)).toBe(true);
      expect(res.headers.get('content-type')).toMatch(/^text\/plain\b/);
      expect(res.headers.get('content-length')).toBe(String(bytes.length));
      expect(res.headers.get('content-disposition')).toMatch(/^attachment;\s*filename="?notes\.txt"?$/);
      expect(res.headers.get('etag')).toBe(`"${sha1(bytes)}"`);
      expect(res.headers.get('accept-ranges')).toBe('bytes');
      expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    });

    it('answers application/octet-stream for a name without a known type', async () => {
      const alice = await newUser(app);
      const up = await alice.upload('/api/files', { name: 'blob.zzunknown', bytes: randomBytes(10) });
      const res = await alice.get(`/api/files/${up.json.id}/content`);
      expect(res.headers.get('content-type')).toBe('application/octet-stream');
    });

    it('answers a byte range with 206, Content-Range and exactly those bytes (first-last, open-ended and suffix forms)', async () => {
      const alice = await newUser(app);
      const bytes = randomBytes(1000);
      const { json: file } = await alice.upload('/api/files', { name: 'r.bin', bytes });
      const cases: Array<[string, number, number]> = [
        ['bytes=0-9', 0, 9],
        ['bytes=990-', 990, 999],
        ['bytes=-5', 995, 999],
        ['bytes=500-5000', 500, 999],
      ];
      for (const [range, start, end] of cases) {
        const res = await alice.get(`/api/files/${file.id}/content`, { range });
        expect(res.status, range).toBe(206);
        expect(res.headers.get('content-range'), range).toBe(`bytes ${start}-${end}/1000`);
        expect(res.headers.get('content-length'), range).toBe(String(end - start + 1));
        expect(res.bytes.equals(bytes.subarray(start, end + 1)), range).toBe(true);
      }
    });

    it('answers an unsatisfiable range with 416 and Content-Range bytes */size', async () => {
      const alice = await newUser(app);
      const { json: file } = await alice.upload('/api/files', { name: 'r.bin', bytes: randomBytes(100) });
      for (const range of ['bytes=100-', 'bytes=5000-6000']) {
        const res = await alice.get(`/api/files/${file.id}/content`, { range });
        expect(res.status, range).toBe(416);
        expect(res.headers.get('content-range'), range).toBe('bytes */100');
        expect(expectErrorBody(res.json).code).toBe('range_not_satisfiable');
      }
    });

    it('answers 304 with no body when If-None-Match carries the current ETag, and 200 for another ETag', async () => {
      const alice = await newUser(app);
      const bytes = randomBytes(64);
      const { json: file } = await alice.upload('/api/files', { name: 'c.bin', bytes });
      const path = `/api/files/${file.id}/content`;
      const auth = { authorization: `Bearer ${alice.token}` };
      const cached = await plainGet(app.baseUrl, path, { ...auth, 'if-none-match': `"${sha1(bytes)}"` });
      expect(cached.status).toBe(304);
      expect(cached.bytes.length).toBe(0);
      expect(cached.headers.etag).toBe(`"${sha1(bytes)}"`);
      const listed = await plainGet(app.baseUrl, path, { ...auth, 'if-none-match': `"${'0'.repeat(40)}", "${sha1(bytes)}"` });
      expect(listed.status).toBe(304);
      const stale = await plainGet(app.baseUrl, path, { ...auth, 'if-none-match': `"${'0'.repeat(40)}"` });
      expect(stale.status).toBe(200);
      expect(stale.bytes.equals(bytes)).toBe(true);
    });

    it('answers HEAD with the headers and Content-Length but no body', async () => {
      const alice = await newUser(app);
      const { json: file } = await alice.upload('/api/files', { name: 'h.bin', bytes: randomBytes(321) });
      const res = await alice.request('HEAD', `/api/files/${file.id}/content`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-length')).toBe('321');
      expect(res.bytes.length).toBe(0);
    });
  });

  describe('a 0-byte file', () => {
    it('uploads with 201, size 0 and the SHA-1 of empty input, downloads as an empty 200, and any Range on it is 416', async () => {
      const alice = await newUser(app);
      const up = await alice.upload('/api/files', { name: 'empty.txt', bytes: Buffer.alloc(0) });
      expect(up.status).toBe(201);
      expect(up.json).toMatchObject({ size: 0, sha1: EMPTY_SHA1 });

      const res = await alice.get(`/api/files/${up.json.id}/content`);
      expect(res.status).toBe(200);
      expect(res.bytes.length).toBe(0);
      expect(res.headers.get('content-length')).toBe('0');
      expect(res.headers.get('etag')).toBe(`"${EMPTY_SHA1}"`);

      for (const range of ['bytes=0-', 'bytes=0-0', 'bytes=-1']) {
        const ranged = await alice.get(`/api/files/${up.json.id}/content`, { range });
        expect(ranged.status, range).toBe(416);
        expect(ranged.headers.get('content-range'), range).toBe('bytes */0');
      }
    });
  });

  describe('PATCH /api/files/:id', () => {
    it('renames a file (200, new name in metadata, listing and Content-Disposition) keeping its id and bytes', async () => {
      const alice = await newUser(app);
      const bytes = randomBytes(50);
      const { json: file } = await alice.upload('/api/files', { name: 'old.bin', bytes });
      const res = await alice.request('PATCH', `/api/files/${file.id}`, { json: { name: 'new.bin' } });
      expect(res.status).toBe(200);
      expect(res.json).toMatchObject({ id: file.id, name: 'new.bin', folder: '/', sha1: sha1(bytes) });
      const listing = await alice.get('/api/files?folder=/');
      expect(listing.json.files.map((f: { name: string }) => f.name)).toEqual(['new.bin']);
      const content = await alice.get(`/api/files/${file.id}/content`);
      expect(content.bytes.equals(bytes)).toBe(true);
      expect(content.headers.get('content-disposition')).toMatch(/filename="?new\.bin"?$/);
    });

    it('moves a file to another folder (creating it) and renames and moves at once', async () => {
      const alice = await newUser(app);
      const { json: file } = await alice.upload('/api/files', { name: 'm.txt', bytes: Buffer.from('move me') });
      const moved = await alice.request('PATCH', `/api/files/${file.id}`, { json: { folder: '/archive/old/' } });
      expect(moved.status).toBe(200);
      expect(moved.json).toMatchObject({ id: file.id, name: 'm.txt', folder: '/archive/old' });
      expect((await alice.get('/api/files?folder=/')).json.files).toEqual([]);
      expect((await alice.get('/api/files?folder=/archive')).json.folders).toEqual([{ name: 'old', path: '/archive/old' }]);
      expect((await alice.get('/api/files?folder=/archive/old')).json.files.map((f: { id: string }) => f.id)).toEqual([file.id]);

      const both = await alice.request('PATCH', `/api/files/${file.id}`, { json: { name: 'back.txt', folder: '/' } });
      expect(both.status).toBe(200);
      expect(both.json).toMatchObject({ name: 'back.txt', folder: '/' });
    });

    it('answers 409 name_conflict when the target name is taken in the target folder, and changes nothing', async () => {
      const alice = await newUser(app);
      const { json: a } = await alice.upload('/api/files', { name: 'a.txt', bytes: Buffer.from('A') });
      await alice.upload('/api/files', { name: 'b.txt', bytes: Buffer.from('B') });
      const { json: c } = await alice.upload('/api/files', { name: 'a.txt', bytes: Buffer.from('C') }, { folder: '/sub' });

      const rename = await alice.request('PATCH', `/api/files/${a.id}`, { json: { name: 'b.txt' } });
      expect(rename.status).toBe(409);
      expect(expectErrorBody(rename.json).code).toBe('name_conflict');
      const move = await alice.request('PATCH', `/api/files/${c.id}`, { json: { folder: '/' } });
      expect(move.status).toBe(409);
      expect((await alice.get(`/api/files/${a.id}`)).json).toMatchObject({ name: 'a.txt', folder: '/' });
      expect((await alice.get(`/api/files/${c.id}`)).json).toMatchObject({ name: 'a.txt', folder: '/sub' });
    });

    it('answers 200 unchanged for an empty body or the current name, and 400 for an unknown field', async () => {
      const alice = await newUser(app);
      const { json: file } = await alice.upload('/api/files', { name: 'same.txt', bytes: Buffer.from('x') });
      expect((await alice.request('PATCH', `/api/files/${file.id}`, { json: {} })).json).toMatchObject({ name: 'same.txt' });
      expect((await alice.request('PATCH', `/api/files/${file.id}`, { json: { name: 'same.txt' } })).status).toBe(200);
      const unknown = await alice.request('PATCH', `/api/files/${file.id}`, { json: { size: 1 } });
      expect(unknown.status).toBe(400);
      expectErrorBody(unknown.json);
    });

    it('answers 415 to a change sent as anything but JSON (curl -d without a Content-Type), and renames nothing', async () => {
      const alice = await newUser(app);
      const { json: file } = await alice.upload('/api/files', { name: 'kept.txt', bytes: Buffer.from('x') });
      for (const type of ['application/x-www-form-urlencoded', 'text/plain']) {
        const res = await alice.request('PATCH', `/api/files/${file.id}`, { body: JSON.stringify({ name: 'renamed.txt' }), headers: { 'content-type': type } });
        expect(res.status).toBe(415);
        expect(expectErrorBody(res.json).code).toBe('unsupported_media_type');
      }
      expect((await alice.get(`/api/files/${file.id}`)).json).toMatchObject({ name: 'kept.txt' });
    });
  });

  describe('DELETE /api/files/:id', () => {
    it('answers 204, then the id answers 404 everywhere, the row stays with status deleted, and the name is free again', async () => {
      const alice = await newUser(app);
      const bytes = randomBytes(32);
      const { json: file } = await alice.upload('/api/files', { name: 'gone.bin', bytes });
      const del = await alice.request('DELETE', `/api/files/${file.id}`);
      expect(del.status).toBe(204);
      expect(del.bytes.length).toBe(0);

      expect((await alice.get(`/api/files/${file.id}`)).status).toBe(404);
      expect((await alice.get(`/api/files/${file.id}/content`)).status).toBe(404);
      expect((await alice.request('PATCH', `/api/files/${file.id}`, { json: { name: 'x' } })).status).toBe(404);
      expect((await alice.request('DELETE', `/api/files/${file.id}`)).status).toBe(404);
      expect((await alice.get('/api/files?folder=/')).json.files).toEqual([]);

      const row = await app.services.db.primary('user_files').where({ id: file.id }).first();
      expect(row.status).toBe('deleted');

      const again = await alice.upload('/api/files', { name: 'gone.bin', bytes });
      expect(again.status).toBe(201);
      expect(again.json.id).not.toBe(file.id);
    });
  });

  describe('ids that are not yours', () => {
    it("answers 404 for another user's file on every route and leaves it untouched", async () => {
      const alice = await newUser(app);
      const mallory = await newUser(app);
      const bytes = randomBytes(20);
      const { json: file } = await alice.upload('/api/files', { name: 'private.bin', bytes });
      for (const res of [
        await mallory.get(`/api/files/${file.id}`),
        await mallory.get(`/api/files/${file.id}/content`),
        await mallory.request('PATCH', `/api/files/${file.id}`, { json: { name: 'stolen.bin' } }),
        await mallory.request('DELETE', `/api/files/${file.id}`),
      ]) {
        expect(res.status).toBe(404);
        expect(expectErrorBody(res.json).code).toBe('not_found');
      }
      expect((await mallory.get('/api/files?folder=/')).json.files).toEqual([]);
      const still = await alice.get(`/api/files/${file.id}/content`);
      expect(still.status).toBe(200);
      expect(still.bytes.equals(bytes)).toBe(true);
      expect((await alice.get(`/api/files/${file.id}`)).json.name).toBe('private.bin');
    });

    it('answers 404 (never 400 or 500) for unknown and malformed ids on every route', async () => {
      const alice = await newUser(app);
      const { json: file } = await alice.upload('/api/files', { name: 'real.bin', bytes: randomBytes(8) });
      const ids = [
        'abc',
        encodeURIComponent('../x'),
        'zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz',
        'x'.repeat(36),
        randomUUID(),
        file.id.toUpperCase(),
        `${file.id}x`,
        encodeURIComponent(`${file.id}' OR '1'='1`),
        '1',
      ];
      for (const id of ids) await expectNotFoundOnEveryFileRoute(alice, id);
      expect((await alice.get(`/api/files/${file.id}`)).json.name).toBe('real.bin');
    });

    it('answers 404 for an id whose percent-encoding cannot be decoded', async () => {
      const alice = await newUser(app);
      for (const id of ['%zz', 'abc%E0%A4%A', '%']) await expectNotFoundOnEveryFileRoute(alice, id);
    });
  });
});

/** GET, GET content, PATCH and DELETE of file `id` all answer 404 not_found. */
async function expectNotFoundOnEveryFileRoute(client: Awaited<ReturnType<typeof newUser>>, id: string): Promise<void> {
  for (const [method, path] of [
    ['GET', `/api/files/${id}`],
    ['GET', `/api/files/${id}/content`],
    ['PATCH', `/api/files/${id}`],
    ['DELETE', `/api/files/${id}`],
  ] as const) {
    const res = await client.request(method, path, method === 'PATCH' ? { json: { name: 'n.txt' } } : {});
    expect(res.status, `${method} ${path}`).toBe(404);
    expect(expectErrorBody(res.json).code, `${method} ${path}`).toBe('not_found');
  }
}
