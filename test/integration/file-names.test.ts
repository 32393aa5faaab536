import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { availableProfiles, useApp } from '../support/app.js';
import { expectErrorBody, filenameStar, newUser, sha1, tempFiles, uploadRaw } from '../support/files.js';

const profiles = await availableProfiles('file names');

const UNICODE_NAME = 'Ünïcødé 文件.txt';
/** 255 bytes of UTF-8: the longest name allowed. */
const LONGEST_NAME = 'é'.repeat(125) + 'a.txt';
/** 256 bytes of UTF-8 in only 128 characters: the limit is bytes, not characters. */
const TOO_LONG_NAME = 'é'.repeat(128);

describe.each(profiles)('file names (%s profile)', (profile) => {
  const app = useApp(profile);

  const userFileCount = async (userId: string) =>
    Number((await app.services.db.primary('user_files').where({ user_id: userId }).count({ n: '*' }).first())!.n);

  it('round-trips a non-ASCII name in the upload answer, metadata, listing and Content-Disposition filename*', async () => {
    const alice = await newUser(app);
    const bytes = Buffer.from('unicode content');
    const up = await alice.upload('/api/files', { name: UNICODE_NAME, bytes });
    expect(up.status).toBe(201);
    expect(up.json.name).toBe(UNICODE_NAME);
    expect((await alice.get(`/api/files/${up.json.id}`)).json.name).toBe(UNICODE_NAME);
    expect((await alice.get('/api/files?folder=/')).json.files.map((f: { name: string }) => f.name)).toEqual([UNICODE_NAME]);

    const content = await alice.get(`/api/files/${up.json.id}/content`);
    expect(content.status).toBe(200);
    expect(content.bytes.equals(bytes)).toBe(true);
    const disposition = content.headers.get('content-disposition');
    expect(disposition).toMatch(/^attachment;/);
    expect(filenameStar(disposition)).toBe(UNICODE_NAME);
    // the plain filename= fallback must be ASCII so old clients and header parsers cope
    expect(disposition).toMatch(/^[\x20-\x7e]*$/);
  });

  it('accepts a non-ASCII name sent as RFC 5987 filename* and as raw UTF-8 in filename=', async () => {
    const alice = await newUser(app);
    const star = await uploadRaw(alice, `filename*=UTF-8''${encodeURIComponent('ø star.txt')}`, Buffer.from('1'));
    expect(star.status).toBe(201);
    expect(star.json.name).toBe('ø star.txt');
    const raw = await uploadRaw(alice, 'filename="文件 raw.txt"', Buffer.from('2'));
    expect(raw.status).toBe(201);
    expect(raw.json.name).toBe('文件 raw.txt');
  });

  it('accepts a name of exactly 255 UTF-8 bytes on upload and on rename', async () => {
    expect(Buffer.byteLength(LONGEST_NAME)).toBe(255);
    const alice = await newUser(app);
    const up = await alice.upload('/api/files', { name: LONGEST_NAME, bytes: Buffer.from('long') });
    expect(up.status).toBe(201);
    expect(up.json.name).toBe(LONGEST_NAME);
    const other = await alice.upload('/api/files', { name: 'short.txt', bytes: Buffer.from('short') });
    const renamed = await alice.request('PATCH', `/api/files/${other.json.id}`, { json: { name: 'x' + LONGEST_NAME.slice(1) } });
    expect(renamed.status).toBe(200);
  });

  it('keeps names that look odd but are legal: spaces, quotes, percent signs, leading dots, emoji', async () => {
    const alice = await newUser(app);
    for (const name of ['  spaced  .txt', "it's 100% done.txt", '.hidden', '...', 'emoji 😀.txt', 'a;b=c.txt']) {
      const up = await alice.upload('/api/files', { name, bytes: randomBytes(8) });
      expect(up.status, name).toBe(201);
      expect(up.json.name, name).toBe(name);
      const content = await alice.get(`/api/files/${up.json.id}/content`);
      expect(filenameStar(content.headers.get('content-disposition')) ?? name, name).toBe(name);
    }
  });

  describe('bad names as the multipart filename answer 400 with a JSON error, store nothing and leave no temp file', () => {
    const cases: Array<[string, string]> = [
      ['a "/"', 'filename="dir/evil.txt"'],
      ['a "/" in filename*', `filename*=UTF-8''dir%2Fevil.txt`],
      ['a "\\"', `filename*=UTF-8''dir%5Cevil.txt`],
      ['".."', 'filename=".."'],
      ['"."', 'filename="."'],
      ['"../.." as a path', 'filename="../.."'],
      ['a NUL', `filename*=UTF-8''a%00b.txt`],
      ['a raw control character', 'filename="a\u0001b.txt"'],
      ['a tab', 'filename="a\tb.txt"'],
      ['a newline (as a WHATWG-escaped %0A)', 'filename="a%0Ab.txt"'],
      ['DEL', 'filename="a\u007fb.txt"'],
      ['256 bytes', `filename="${TOO_LONG_NAME}"`],
    ];
    it.each(cases)('%s', async (_label, param) => {
      const alice = await newUser(app);
      const res = await uploadRaw(alice, param, randomBytes(1000));
      expect(res.status).toBe(400);
      expectErrorBody(res.json);
      expect(await userFileCount(alice.userId)).toBe(0);
      expect((await alice.get('/api/files?folder=/')).json.files).toEqual([]);
      expect(await tempFiles(app)).toEqual([]);
    });

    it('names "." and ".." and path-like names with invalid_name, not as a missing file', async () => {
      const alice = await newUser(app);
      for (const param of ['filename=".."', 'filename="."', 'filename="a/b.txt"', 'filename="a\\\\b.txt"']) {
        const res = await uploadRaw(alice, param, Buffer.from('x'));
        expect(res.status, param).toBe(400);
        expect(expectErrorBody(res.json).code, param).toBe('invalid_name');
      }
    });
  });

  it('refuses a lone UTF-16 surrogate with 400 on every route that takes a name or folder as JSON, and stores nothing', async () => {
    const alice = await newUser(app);
    const lone = 'a\ud800b';
    const upload = await alice.post('/api/uploads', { name: lone, size: 10 });
    expect({ status: upload.status, code: expectErrorBody(upload.json).code }).toEqual({ status: 400, code: 'invalid_name' });
    const uploadFolder = await alice.post('/api/uploads', { name: 'ok.bin', folder: `/${lone}`, size: 10 });
    expect({ status: uploadFolder.status, code: expectErrorBody(uploadFolder.json).code }).toEqual({ status: 400, code: 'invalid_path' });
    const folder = await alice.post('/api/folders', { path: `/x/${lone}` });
    expect({ status: folder.status, code: expectErrorBody(folder.json).code }).toEqual({ status: 400, code: 'invalid_path' });
    const { json: file } = await alice.upload('/api/files', { name: 'keep.bin', bytes: randomBytes(4) });
    const moved = await alice.request('PATCH', `/api/files/${file.id}`, { json: { folder: `/${lone}` } });
    expect({ status: moved.status, code: expectErrorBody(moved.json).code }).toEqual({ status: 400, code: 'invalid_path' });

    expect(await app.services.db.primary('upload_sessions').where({ user_id: alice.userId })).toEqual([]);
    expect((await alice.get('/api/files?folder=/')).json).toMatchObject({ folders: [], files: [{ name: 'keep.bin' }] });
  });

  describe('bad names via PATCH answer 400 invalid_name and leave the file as it was', () => {
    const badNames: Array<[string, string]> = [
      ['empty', ''],
      ['a "/"', 'a/b.txt'],
      ['a "\\"', 'a\\b.txt'],
      ['"."', '.'],
      ['".."', '..'],
      ['a NUL', 'a\u0000b'],
      ['a control character', 'a\u0001b'],
      ['a newline', 'a\nb'],
      ['a tab', 'a\tb'],
      ['DEL', 'a\u007fb'],
      ['256 bytes', TOO_LONG_NAME],
      ['a lone high surrogate', 'a\ud800b'],
      ['a lone low surrogate', 'a\udc00b'],
      ['a surrogate pair the wrong way round', '\udc00\ud800'],
    ];
    it.each(badNames)('%s', async (_label, name) => {
      const alice = await newUser(app);
      const bytes = randomBytes(16);
      const { json: file } = await alice.upload('/api/files', { name: 'keep.bin', bytes });
      const res = await alice.request('PATCH', `/api/files/${file.id}`, { json: { name } });
      expect(res.status).toBe(400);
      expect(expectErrorBody(res.json).code).toBe('invalid_name');
      const after = await alice.get(`/api/files/${file.id}`);
      expect(after.json).toMatchObject({ name: 'keep.bin', folder: '/', sha1: sha1(bytes) });
    });

    it('rejects a non-string name with 400', async () => {
      const alice = await newUser(app);
      const { json: file } = await alice.upload('/api/files', { name: 'keep.bin', bytes: randomBytes(4) });
      for (const name of [null, 42, ['a'], { a: 1 }]) {
        const res = await alice.request('PATCH', `/api/files/${file.id}`, { json: { name } });
        expect(res.status, JSON.stringify(name)).toBe(400);
        expectErrorBody(res.json);
      }
    });
  });
});
