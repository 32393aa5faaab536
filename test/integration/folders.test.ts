import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { availableProfiles, useApp } from '../support/app.js';
import { expectErrorBody, newUser } from '../support/files.js';

const profiles = await availableProfiles('folders');

describe.each(profiles)('folders API (%s profile)', (profile) => {
  const app = useApp(profile);

  const names = (items: Array<{ name: string }>) => items.map((item) => item.name);

  describe('POST /api/folders', () => {
    it('answers 201 {name, path}, creates the parents, and empty folders are listed level by level', async () => {
      const alice = await newUser(app);
      const res = await alice.post('/api/folders', { path: '/a/b/c' });
      expect(res.status).toBe(201);
      expect(res.json).toEqual({ name: 'c', path: '/a/b/c' });

      expect((await alice.get('/api/files?folder=/')).json).toEqual({ folder: '/', folders: [{ name: 'a', path: '/a' }], files: [] });
      expect((await alice.get('/api/files?folder=/a')).json).toEqual({ folder: '/a', folders: [{ name: 'b', path: '/a/b' }], files: [] });
      expect((await alice.get('/api/files?folder=/a/b')).json).toEqual({ folder: '/a/b', folders: [{ name: 'c', path: '/a/b/c' }], files: [] });
      expect((await alice.get('/api/files?folder=/a/b/c')).json).toEqual({ folder: '/a/b/c', folders: [], files: [] });

      const rows = await app.services.db.primary('folders').where({ user_id: alice.userId }).orderBy('path');
      expect(rows.map((row: { path: string; parent: string }) => [row.path, row.parent])).toEqual([
        ['/a', '/'],
        ['/a/b', '/a'],
        ['/a/b/c', '/a/b'],
      ]);
    });

    it('drops a trailing "/" and treats creating an existing folder as a no-op (201, listed once)', async () => {
      const alice = await newUser(app);
      const first = await alice.post('/api/folders', { path: '/docs/' });
      expect(first.status).toBe(201);
      expect(first.json).toEqual({ name: 'docs', path: '/docs' });
      expect((await alice.post('/api/folders', { path: '/docs' })).status).toBe(201);
      expect((await alice.get('/api/files?folder=/')).json.folders).toEqual([{ name: 'docs', path: '/docs' }]);
      expect((await alice.get('/api/files?folder=/docs/')).json.folder).toBe('/docs');
    });

    it('lists sibling folders by path and keeps non-ASCII folder names intact', async () => {
      const alice = await newUser(app);
      for (const path of ['/zeta', '/Ünï 文件', '/alpha', '/alpha/inner']) {
        expect((await alice.post('/api/folders', { path })).status, path).toBe(201);
      }
      const root = await alice.get('/api/files?folder=/');
      expect(root.json.folders).toEqual([
        { name: 'alpha', path: '/alpha' },
        { name: 'zeta', path: '/zeta' },
        { name: 'Ünï 文件', path: '/Ünï 文件' },
      ]);
      const unicode = await alice.get(`/api/files?folder=${encodeURIComponent('/Ünï 文件')}`);
      expect(unicode.status).toBe(200);
      expect(unicode.json.folder).toBe('/Ünï 文件');
    });

    it('answers 400 with a JSON error for relative paths, "." and ".." segments, empty segments, bad names and the root', async () => {
      const alice = await newUser(app);
      const bad = ['docs', '', '/a/../b', '/a/./b', '/..', '/.', '/a//b', '//', '/a\u0000b', '/a\u0001b', '/a\\b', '/' + 'é'.repeat(128), '/'];
      for (const path of bad) {
        const res = await alice.post('/api/folders', { path });
        expect(res.status, JSON.stringify(path)).toBe(400);
        expect(['invalid_path', 'invalid_input'], JSON.stringify(path)).toContain(expectErrorBody(res.json).code);
      }
      for (const body of [{}, { path: 5 }, { path: null }]) {
        expect((await alice.post('/api/folders', body)).status, JSON.stringify(body)).toBe(400);
      }
      expect((await alice.get('/api/files?folder=/')).json.folders).toEqual([]);
      expect(await app.services.db.primary('folders').where({ user_id: alice.userId })).toEqual([]);
    });
  });

  describe('GET /api/files?folder=', () => {
    it('defaults to "/" and lists only the files directly in the folder, by name', async () => {
      const alice = await newUser(app);
      await alice.upload('/api/files', { name: 'b.txt', bytes: Buffer.from('b') });
      await alice.upload('/api/files', { name: 'a.txt', bytes: Buffer.from('a') });
      await alice.upload('/api/files', { name: 'deep.txt', bytes: Buffer.from('d') }, { folder: '/x/y' });

      const root = await alice.get('/api/files');
      expect(root.status).toBe(200);
      expect(root.json.folder).toBe('/');
      expect(names(root.json.files)).toEqual(['a.txt', 'b.txt']);
      expect(root.json.folders).toEqual([{ name: 'x', path: '/x' }]);
      expect(root.json.files[0]).toMatchObject({ name: 'a.txt', folder: '/', size: 1 });

      expect((await alice.get('/api/files?folder=/x')).json).toEqual({ folder: '/x', folders: [{ name: 'y', path: '/x/y' }], files: [] });
      expect(names((await alice.get('/api/files?folder=/x/y')).json.files)).toEqual(['deep.txt']);
    });

    it('answers 404 for a folder that does not exist and 400 for a malformed folder', async () => {
      const alice = await newUser(app);
      const missing = await alice.get('/api/files?folder=/nope');
      expect(missing.status).toBe(404);
      expect(expectErrorBody(missing.json).code).toBe('not_found');
      for (const folder of ['nope', '/a/..', '/./a', '/a//b']) {
        const res = await alice.get(`/api/files?folder=${encodeURIComponent(folder)}`);
        expect(res.status, folder).toBe(400);
        expectErrorBody(res.json);
      }
    });

    it("never shows another user's folders or files", async () => {
      const alice = await newUser(app);
      const bob = await newUser(app);
      await alice.post('/api/folders', { path: '/secret' });
      await alice.upload('/api/files', { name: 'mine.txt', bytes: Buffer.from('m') });
      expect((await bob.get('/api/files?folder=/')).json).toEqual({ folder: '/', folders: [], files: [] });
      expect((await bob.get('/api/files?folder=/secret')).status).toBe(404);
    });

    it('rejects an upload into a malformed folder with 400 and stores nothing', async () => {
      const alice = await newUser(app);
      for (const folder of ['relative', '/a/../b', '/a/./b']) {
        const res = await alice.upload('/api/files', { name: 'f.txt', bytes: Buffer.from('f') }, { folder });
        expect(res.status, folder).toBe(400);
        expect(expectErrorBody(res.json).code, folder).toBe('invalid_path');
      }
      expect(await app.services.db.primary('user_files').where({ user_id: alice.userId })).toEqual([]);
    });
  });

  describe('DELETE /api/folders?path=', () => {
    it('answers 204 and soft-deletes the folder, its subfolders and every file below them', async () => {
      const alice = await newUser(app);
      const top = await alice.upload('/api/files', { name: 'top.txt', bytes: randomBytes(10) }, { folder: '/proj' });
      const deep = await alice.upload('/api/files', { name: 'deep.txt', bytes: randomBytes(10) }, { folder: '/proj/src/lib' });
      const outside = await alice.upload('/api/files', { name: 'keep.txt', bytes: randomBytes(10) });

      const res = await alice.request('DELETE', '/api/folders?path=/proj');
      expect(res.status).toBe(204);
      expect(res.bytes.length).toBe(0);

      expect((await alice.get('/api/files?folder=/')).json).toMatchObject({ folders: [], files: [{ id: outside.json.id }] });
      for (const folder of ['/proj', '/proj/src', '/proj/src/lib']) {
        expect((await alice.get(`/api/files?folder=${folder}`)).status, folder).toBe(404);
      }
      for (const id of [top.json.id, deep.json.id]) {
        expect((await alice.get(`/api/files/${id}`)).status).toBe(404);
        expect((await alice.get(`/api/files/${id}/content`)).status).toBe(404);
      }
      const rows = await app.services.db.primary('user_files').whereIn('id', [top.json.id, deep.json.id, outside.json.id]);
      const statusById = Object.fromEntries(rows.map((row: { id: string; status: string }) => [row.id, row.status]));
      expect(statusById).toEqual({ [top.json.id]: 'deleted', [deep.json.id]: 'deleted', [outside.json.id]: 'available' });
      const folders = await app.services.db.primary('folders').where({ user_id: alice.userId }).orderBy('path');
      expect(folders.map((row: { path: string; status: string }) => [row.path, row.status])).toEqual([
        ['/proj', 'deleted'],
        ['/proj/src', 'deleted'],
        ['/proj/src/lib', 'deleted'],
      ]);
    });

    it('leaves folders that merely share a prefix, including LIKE wildcards, untouched', async () => {
      const alice = await newUser(app);
      const paths = ['/a_', '/ab', '/a_b', '/a_ c', '/50%', '/50x', '/50%/in'];
      const ids: Record<string, string> = {};
      for (const folder of paths) {
        ids[folder] = (await alice.upload('/api/files', { name: 'f.txt', bytes: randomBytes(8) }, { folder })).json.id;
      }
      expect((await alice.request('DELETE', `/api/folders?path=${encodeURIComponent('/a_')}`)).status).toBe(204);
      expect((await alice.request('DELETE', `/api/folders?path=${encodeURIComponent('/50%')}`)).status).toBe(204);
      expect(names((await alice.get('/api/files?folder=/')).json.folders)).toEqual(['50x', 'a_ c', 'a_b', 'ab']);
      for (const folder of ['/ab', '/a_b', '/a_ c', '/50x']) {
        expect((await alice.get(`/api/files/${ids[folder]}`)).status, folder).toBe(200);
      }
      for (const folder of ['/a_', '/50%', '/50%/in']) {
        expect((await alice.get(`/api/files/${ids[folder]}`)).status, folder).toBe(404);
      }
    });

    it('answers 404 for a missing or already deleted folder and 400 for the root or a malformed path', async () => {
      const alice = await newUser(app);
      await alice.post('/api/folders', { path: '/once' });
      expect((await alice.request('DELETE', '/api/folders?path=/once/')).status).toBe(204);
      for (const path of ['/once', '/never']) {
        const res = await alice.request('DELETE', `/api/folders?path=${path}`);
        expect(res.status, path).toBe(404);
        expect(expectErrorBody(res.json).code).toBe('not_found');
      }
      for (const query of ['?path=/', '?path=relative', `?path=${encodeURIComponent('/a/..')}`, '']) {
        const res = await alice.request('DELETE', `/api/folders${query}`);
        expect(res.status, query).toBe(400);
        expectErrorBody(res.json);
      }
    });

    it("answers 404 when another user deletes a folder of the same path, and the owner's folder survives", async () => {
      const alice = await newUser(app);
      const mallory = await newUser(app);
      const { json: file } = await alice.upload('/api/files', { name: 'f.txt', bytes: randomBytes(8) }, { folder: '/shared-name' });
      expect((await mallory.request('DELETE', '/api/folders?path=/shared-name')).status).toBe(404);
      expect((await alice.get(`/api/files/${file.id}`)).status).toBe(200);
      expect(names((await alice.get('/api/files?folder=/')).json.folders)).toEqual(['shared-name']);
    });

    it('lets the folder be created again, empty, and the old names reused by new files', async () => {
      const alice = await newUser(app);
      const bytes = randomBytes(16);
      const old = await alice.upload('/api/files', { name: 'again.bin', bytes }, { folder: '/tmpdir' });
      expect((await alice.request('DELETE', '/api/folders?path=/tmpdir')).status).toBe(204);
      expect((await alice.post('/api/folders', { path: '/tmpdir' })).status).toBe(201);
      expect((await alice.get('/api/files?folder=/tmpdir')).json).toEqual({ folder: '/tmpdir', folders: [], files: [] });
      const fresh = await alice.upload('/api/files', { name: 'again.bin', bytes }, { folder: '/tmpdir' });
      expect(fresh.status).toBe(201);
      expect(fresh.json.id).not.toBe(old.json.id);
      expect((await alice.get(`/api/files/${old.json.id}`)).status).toBe(404);
    });
  });
});
