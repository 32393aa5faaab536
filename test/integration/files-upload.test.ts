import { randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { availableProfiles, useApp } from '../support/app.js';
import { blobFiles, expectErrorBody, newUser, rawMultipart, sha1, tempFiles } from '../support/files.js';

const profiles = await availableProfiles('files upload');

describe.each(profiles)('multipart upload, dedupe and temp files (%s profile)', (profile) => {
  const app = useApp(profile);

  const db = () => app.services.db.primary;
  const contentRows = (hash: string) => db()('files').where({ sha1: hash });
  const linksTo = async (hash: string) => {
    const blob = await contentRows(hash).first();
    return db()('user_files').where({ file_id: blob.id }).orderBy('user_id');
  };

  describe('dedupe', () => {
    it('stores content two users upload once: one files row, two user_files rows, one blob under DATA_DIR/blobs', async () => {
      const alice = await newUser(app);
      const bob = await newUser(app);
      const bytes = randomBytes(50_000);
      const hash = sha1(bytes);
      const blobsBefore = await blobFiles(app);

      const a = await alice.upload('/api/files', { name: 'shared.bin', bytes });
      const b = await bob.upload('/api/files', { name: 'copy of shared.bin', bytes }, { folder: '/in' });
      expect([a.status, b.status]).toEqual([201, 201]);
      expect(a.json.id).not.toBe(b.json.id);
      expect([a.json.sha1, b.json.sha1]).toEqual([hash, hash]);

      expect(await contentRows(hash)).toHaveLength(1);
      const links = await linksTo(hash);
      expect(links.map((row: { user_id: string }) => row.user_id).sort()).toEqual([alice.userId, bob.userId].sort());

      const blobsAfter = await blobFiles(app);
      expect(blobsAfter.length).toBe(blobsBefore.length + 1);
      const added = blobsAfter.filter((file) => !blobsBefore.includes(file));
      expect(added).toHaveLength(1);
      expect(path.basename(added[0]!).startsWith(hash)).toBe(true);
      expect((await fsp.readFile(path.join(app.dataDir, 'blobs', added[0]!))).equals(bytes)).toBe(true);

      for (const [client, id] of [[alice, a.json.id], [bob, b.json.id]] as const) {
        const content = await client.get(`/api/files/${id}/content`);
        expect(content.bytes.equals(bytes)).toBe(true);
      }
      expect(await tempFiles(app)).toEqual([]);
    });

    it('answers 201 to 5 concurrent identical uploads by different users and keeps one files row and one blob', async () => {
      const users = await Promise.all(Array.from({ length: 5 }, () => newUser(app)));
      const bytes = randomBytes(200_000);
      const hash = sha1(bytes);
      const blobsBefore = (await blobFiles(app)).length;

      const answers = await Promise.all(users.map((user) => user.upload('/api/files', { name: 'race.bin', bytes })));
      expect(answers.map((answer) => answer.status)).toEqual([201, 201, 201, 201, 201]);
      expect(new Set(answers.map((answer) => answer.json.id)).size).toBe(5);
      expect(answers.every((answer) => answer.json.sha1 === hash && answer.json.size === bytes.length)).toBe(true);

      expect(await contentRows(hash)).toHaveLength(1);
      expect(await linksTo(hash)).toHaveLength(5);
      expect((await blobFiles(app)).length).toBe(blobsBefore + 1);
      expect(await tempFiles(app)).toEqual([]);
      for (const [i, user] of users.entries()) {
        expect((await user.get(`/api/files/${answers[i]!.json.id}/content`)).bytes.equals(bytes)).toBe(true);
      }
    });

    it('answers 200 with the same id when a user uploads the same content under the same name again', async () => {
      const alice = await newUser(app);
      const bytes = randomBytes(1000);
      const first = await alice.upload('/api/files', { name: 'again.bin', bytes }, { folder: '/f' });
      const second = await alice.upload('/api/files', { name: 'again.bin', bytes }, { folder: '/f/' });
      expect(first.status).toBe(201);
      expect(second.status).toBe(200);
      expect(second.json).toEqual(first.json);
      expect(await db()('user_files').where({ user_id: alice.userId })).toHaveLength(1);
      expect(await tempFiles(app)).toEqual([]);
    });

    it('links the same content under another name or folder as a new file sharing the blob', async () => {
      const alice = await newUser(app);
      const bytes = randomBytes(1000);
      const a = await alice.upload('/api/files', { name: 'one.bin', bytes });
      const b = await alice.upload('/api/files', { name: 'two.bin', bytes });
      const c = await alice.upload('/api/files', { name: 'one.bin', bytes }, { folder: '/elsewhere' });
      expect([a.status, b.status, c.status]).toEqual([201, 201, 201]);
      expect(new Set([a.json.id, b.json.id, c.json.id]).size).toBe(3);
      expect(await contentRows(sha1(bytes))).toHaveLength(1);
      expect(await linksTo(sha1(bytes))).toHaveLength(3);
    });

    it('answers 409 name_conflict for the same name with different content and keeps the first file', async () => {
      const alice = await newUser(app);
      const original = randomBytes(100);
      const first = await alice.upload('/api/files', { name: 'clash.bin', bytes: original });
      const second = await alice.upload('/api/files', { name: 'clash.bin', bytes: randomBytes(100) });
      expect(second.status).toBe(409);
      expect(expectErrorBody(second.json).code).toBe('name_conflict');
      expect(await db()('user_files').where({ user_id: alice.userId })).toHaveLength(1);
      expect((await alice.get(`/api/files/${first.json.id}/content`)).bytes.equals(original)).toBe(true);
      expect(await tempFiles(app)).toEqual([]);
    });

    it('answers concurrent uploads by one user to one name with one 201 and then 200 (same content) or 409 (other content), never 500', async () => {
      const alice = await newUser(app);
      for (let round = 0; round < 3; round++) {
        const same = randomBytes(3000);
        const sameAnswers = await Promise.all(Array.from({ length: 6 }, () => alice.upload('/api/files', { name: `same${round}.bin`, bytes: same })));
        expect(sameAnswers.map((answer) => answer.status).sort()).toEqual([200, 200, 200, 200, 200, 201]);
        expect(new Set(sameAnswers.map((answer) => answer.json.id)).size).toBe(1);

        const differentAnswers = await Promise.all(
          Array.from({ length: 6 }, () => alice.upload('/api/files', { name: `diff${round}.bin`, bytes: randomBytes(3000) })),
        );
        expect(differentAnswers.map((answer) => answer.status).sort()).toEqual([201, 409, 409, 409, 409, 409]);
      }
      expect(await db()('user_files').where({ user_id: alice.userId })).toHaveLength(6);
      expect(await tempFiles(app)).toEqual([]);
    });

    it('lets another user upload a different file under a name someone else already uses', async () => {
      const alice = await newUser(app);
      const bob = await newUser(app);
      expect((await alice.upload('/api/files', { name: 'readme.md', bytes: randomBytes(10) })).status).toBe(201);
      expect((await bob.upload('/api/files', { name: 'readme.md', bytes: randomBytes(10) })).status).toBe(201);
    });
  });

  describe('request shape', () => {
    it('answers 400 invalid_input to a multipart body without a `file` field and leaves no temp file', async () => {
      const alice = await newUser(app);
      const form = new FormData();
      form.append('folder', '/x');
      const res = await alice.request('POST', '/api/files', { body: form });
      expect(res.status).toBe(400);
      expect(expectErrorBody(res.json).code).toBe('invalid_input');
      expect(await tempFiles(app)).toEqual([]);
    });

    it('answers 400 to a file sent under another field name, or two files, and leaves no temp file', async () => {
      const alice = await newUser(app);
      const other = new FormData();
      other.append('upload', new Blob([randomBytes(100)]), 'a.bin');
      const two = new FormData();
      two.append('file', new Blob([randomBytes(300_000)]), 'a.bin');
      two.append('file', new Blob([randomBytes(100)]), 'b.bin');
      for (const body of [other, two]) {
        const res = await alice.request('POST', '/api/files', { body });
        expect(res.status).toBe(400);
        expectErrorBody(res.json);
      }
      expect(await db()('user_files').where({ user_id: alice.userId })).toHaveLength(0);
      await expect.poll(() => tempFiles(app)).toEqual([]);
    });

    it('answers 400 to a multipart body that is cut off mid-part', async () => {
      const alice = await newUser(app);
      const { body, headers } = rawMultipart([{ disposition: 'form-data; name="file"; filename="cut.bin"', body: randomBytes(5000) }]);
      const res = await alice.request('POST', '/api/files', { body: new Uint8Array(body.subarray(0, body.length - 60)), headers });
      expect(res.status).toBe(400);
      expectErrorBody(res.json);
      await expect.poll(() => tempFiles(app)).toEqual([]);
    });

    it('answers 415 to a POST /api/files that is not multipart/form-data', async () => {
      const alice = await newUser(app);
      const cases: Array<{ body?: BodyInit; headers?: Record<string, string> }> = [
        { body: JSON.stringify({ name: 'a.txt' }), headers: { 'content-type': 'application/json' } },
        { body: 'raw bytes', headers: { 'content-type': 'application/octet-stream' } },
        { body: 'a=b', headers: { 'content-type': 'application/x-www-form-urlencoded' } },
        {},
      ];
      for (const options of cases) {
        const res = await alice.request('POST', '/api/files', options);
        expect(res.status, JSON.stringify(options.headers)).toBe(415);
        expect(expectErrorBody(res.json).code).toBe('unsupported_media_type');
      }
    });

    it('requires authentication: 401 without a token, and nothing is stored', async () => {
      const alice = await newUser(app);
      const token = alice.token;
      alice.token = undefined;
      const res = await alice.upload('/api/files', { name: 'anon.bin', bytes: randomBytes(10) });
      expect(res.status).toBe(401);
      alice.token = token;
      expect(await db()('user_files').where({ user_id: alice.userId })).toHaveLength(0);
    });
  });

  describe('temp files', () => {
    it('leaves DATA_DIR/tmp empty after a new upload, a deduplicated upload and a rejected name', async () => {
      const alice = await newUser(app);
      const bytes = randomBytes(100_000);
      expect((await alice.upload('/api/files', { name: 'new.bin', bytes })).status).toBe(201);
      expect(await tempFiles(app)).toEqual([]);
      expect((await alice.upload('/api/files', { name: 'dup.bin', bytes })).status).toBe(201);
      expect(await tempFiles(app)).toEqual([]);
      expect((await alice.upload('/api/files', { name: 'bad\u0001.bin', bytes: randomBytes(100_000) })).status).toBe(400);
      expect(await tempFiles(app)).toEqual([]);
      expect((await alice.upload('/api/files', { name: 'ok.bin', bytes: randomBytes(10) }, { folder: '/../x' })).status).toBe(400);
      expect(await tempFiles(app)).toEqual([]);
    });
  });
});
