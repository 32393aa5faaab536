import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { availableProfiles, useApp } from '../support/app.js';
import { pathKey } from '../../src/db/user-files.repository.js';
import { expectErrorBody, filenameStar, newUser, sha1, tempFiles, uploadRaw } from '../support/files.js';
import { tusRequest } from '../support/tus.js';

const profiles = await availableProfiles('file names');

const UNICODE_NAME = 'Ünïcødé 文件.txt';
/** 255 bytes of UTF-8: the longest name allowed. */
const LONGEST_NAME = 'é'.repeat(125) + 'a.txt';
/** 256 bytes of UTF-8 in only 128 characters: the limit is bytes, not characters. */
const TOO_LONG_NAME = 'é'.repeat(128);
/** Shows as "invoiceexe.pdf": the right-to-left override reverses what follows it. */
const SPOOFED_NAME = 'invoice\u202efdp.exe';
/** A name with NEL (U+0085), a C1 control character and a line break. */
const C1_NAME = 'a\u0085b.txt';
/** The multipart filename parameter `filename="<prefix><byte>b.txt"` with `byte` raw, not UTF-8. */
const rawFilename = (...bytes: number[]) => Buffer.concat([Buffer.from('filename="a'), Buffer.from(bytes), Buffer.from('b.txt"')]);

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

  it('decodes filename* in the charset it declares: ISO-8859-1 0xFC is "ü"', async () => {
    const alice = await newUser(app);
    const res = await uploadRaw(alice, `filename*=iso-8859-1''%FCber.txt`, Buffer.from('l1'));
    expect({ status: res.status, name: res.json.name }).toEqual({ status: 201, name: 'über.txt' });
  });

  it('keeps LRM and RLM, which RTL names need and which cannot reverse text', async () => {
    const alice = await newUser(app);
    for (const name of ['דוח 2024\u200f.pdf', 'report\u200e.pdf']) {
      const up = await alice.upload('/api/files', { name, bytes: randomBytes(8) });
      expect({ status: up.status, name: up.json.name }).toEqual({ status: 201, name });
    }
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
      ['a C1 control character (raw UTF-8)', `filename="${C1_NAME}"`],
      ['a C1 CSI in filename*', `filename*=UTF-8''%C2%9B31mred.txt`],
      ['a right-to-left override (raw UTF-8)', `filename="${SPOOFED_NAME}"`],
      ['a right-to-left override in filename*', `filename*=UTF-8''${encodeURIComponent(SPOOFED_NAME)}`],
      ['a right-to-left isolate', `filename="a\u2067b.txt"`],
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

    const notUtf8: Array<[string, string | Buffer]> = [
      ['a lone 0xFF byte in filename=', rawFilename(0xff)],
      ['a Latin-1 "ü" (0xFC) in filename=', rawFilename(0xfc)],
      ['a truncated UTF-8 sequence in filename=', rawFilename(0xe2, 0x82)],
      ['the UTF-8 form of a surrogate in filename=', rawFilename(0xed, 0xa0, 0x80)],
      ['0xFF in filename*=UTF-8', `filename*=UTF-8''a%FFb.txt`],
      ['a truncated sequence in filename*=UTF-8', `filename*=UTF-8''a%E2%82b.txt`],
    ];
    it.each(notUtf8)('a name not valid UTF-8 (%s) answers invalid_name instead of storing U+FFFD', async (_label, param) => {
      const alice = await newUser(app);
      const res = await uploadRaw(alice, param, randomBytes(100));
      expect({ status: res.status, code: expectErrorBody(res.json).code }).toEqual({ status: 400, code: 'invalid_name' });
      expect(await userFileCount(alice.userId)).toBe(0);
      expect(await tempFiles(app)).toEqual([]);
    });

    it('a folder field not valid UTF-8 answers invalid_path instead of storing U+FFFD in the folder', async () => {
      const alice = await newUser(app);
      const res = await uploadRaw(alice, 'filename="ok.txt"', randomBytes(100), { folder: Buffer.from([0x2f, 0x61, 0xff, 0x62]) });
      expect({ status: res.status, code: expectErrorBody(res.json).code }).toEqual({ status: 400, code: 'invalid_path' });
      expect(await userFileCount(alice.userId)).toBe(0);
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

  it.each([
    ['a lone UTF-16 surrogate', 'a\ud800b'],
    ['a C1 control character', C1_NAME],
    ['a right-to-left override', SPOOFED_NAME],
    ['a pop directional isolate', 'a\u2069b'],
  ])('refuses %s with 400 on every route that takes a name or folder as JSON, and stores nothing', async (_label, bad) => {
    const alice = await newUser(app);
    const upload = await alice.post('/api/uploads', { name: bad, size: 10 });
    expect({ status: upload.status, code: expectErrorBody(upload.json).code }).toEqual({ status: 400, code: 'invalid_name' });
    const uploadFolder = await alice.post('/api/uploads', { name: 'ok.bin', folder: `/${bad}`, size: 10 });
    expect({ status: uploadFolder.status, code: expectErrorBody(uploadFolder.json).code }).toEqual({ status: 400, code: 'invalid_path' });
    const folder = await alice.post('/api/folders', { path: `/x/${bad}` });
    expect({ status: folder.status, code: expectErrorBody(folder.json).code }).toEqual({ status: 400, code: 'invalid_path' });
    const { json: file } = await alice.upload('/api/files', { name: 'keep.bin', bytes: randomBytes(4) });
    const moved = await alice.request('PATCH', `/api/files/${file.id}`, { json: { folder: `/${bad}` } });
    expect({ status: moved.status, code: expectErrorBody(moved.json).code }).toEqual({ status: 400, code: 'invalid_path' });

    expect(await app.services.db.primary('upload_sessions').where({ user_id: alice.userId })).toEqual([]);
    expect((await alice.get('/api/files?folder=/')).json).toMatchObject({ folders: [], files: [{ name: 'keep.bin' }] });
  });

  it('refuses a C1 control or a bidirectional control in tus metadata with 400 invalid_name or invalid_path', async () => {
    const alice = await newUser(app);
    const b64 = (value: string) => Buffer.from(value).toString('base64');
    const cases: Array<[string, string]> = [
      [`filename ${b64(SPOOFED_NAME)}`, 'invalid_name'],
      [`filename ${b64(C1_NAME)}`, 'invalid_name'],
      [`filename ${b64('ok.bin')},folder ${b64(`/${SPOOFED_NAME}`)}`, 'invalid_path'],
    ];
    for (const [metadata, code] of cases) {
      const answer = await tusRequest(alice, 'POST', `${app.baseUrl}/api/tus`, { 'upload-length': '10', 'upload-metadata': metadata });
      expect({ status: answer.status, code: expectErrorBody(await answer.json()).code }, metadata).toEqual({ status: 400, code });
    }
  });

  it('still lists, downloads, renames and deletes a file and folder stored before their characters were refused', async () => {
    const alice = await newUser(app);
    const db = app.services.db.primary;
    const bytes = randomBytes(32);
    const { json: file } = await alice.upload('/api/files', { name: 'plain.bin', bytes }, { folder: '/old' });
    const { json: other } = await alice.upload('/api/files', { name: 'other.bin', bytes: randomBytes(8) });
    // what an earlier version let in: a spoofing name in a folder whose name holds a C1 control
    const oldFolder = `/old\u0085dir`;
    await db('folders').where({ user_id: alice.userId, path: '/old' }).update({ path: oldFolder });
    await db('user_files').where({ id: file.id }).update({ folder: oldFolder, name: SPOOFED_NAME, path_key: pathKey(oldFolder, SPOOFED_NAME) });
    await db('user_files').where({ id: other.id }).update({ name: C1_NAME, path_key: pathKey('/', C1_NAME) });

    const root = await alice.get('/api/files?folder=/');
    expect(root.json).toMatchObject({ folders: [{ path: oldFolder }], files: [{ name: C1_NAME }] });
    const inside = await alice.get(`/api/files?folder=${encodeURIComponent(oldFolder)}`);
    expect({ status: inside.status, names: inside.json.files?.map((f: { name: string }) => f.name) }).toEqual({ status: 200, names: [SPOOFED_NAME] });
    for (const stored of [file, other]) {
      const content = await alice.get(`/api/files/${stored.id}/content`);
      expect(content.status).toBe(200);
      expect(content.headers.get('content-disposition')).toMatch(/^[\x20-\x7e]*$/);
    }
    expect((await alice.get(`/api/files/${file.id}/content`)).bytes.equals(bytes)).toBe(true);
    expect(filenameStar((await alice.get(`/api/files/${file.id}/content`)).headers.get('content-disposition'))).toBe(SPOOFED_NAME);

    const renamed = await alice.request('PATCH', `/api/files/${file.id}`, { json: { name: 'invoice.exe', folder: '/' } });
    expect(renamed.status).toBe(200);
    expect(renamed.json).toMatchObject({ name: 'invoice.exe', folder: '/' });
    expect((await alice.request('DELETE', `/api/files/${other.id}`)).status).toBe(204);
    expect((await alice.request('DELETE', `/api/folders?path=${encodeURIComponent(oldFolder)}`)).status).toBe(204);
    expect((await alice.get('/api/files?folder=/')).json).toMatchObject({ folders: [], files: [{ name: 'invoice.exe' }] });
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
      ['a C1 control character', C1_NAME],
      ['a right-to-left override', SPOOFED_NAME],
      ['a left-to-right embedding', 'a\u202ab'],
      ['a first-strong isolate', 'a\u2068b'],
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

    it('refuses a JSON body whose name bytes are not UTF-8 with 400, on rename, upload creation and folder creation', async () => {
      const alice = await newUser(app);
      const bytes = randomBytes(16);
      const { json: file } = await alice.upload('/api/files', { name: 'keep.bin', bytes });
      // {"name":"a<0xFF>b.txt"} as raw bytes: a JSON encoder would never send them
      const withByte = (prefix: string, suffix: string) => Buffer.concat([Buffer.from(prefix), Buffer.from([0xff]), Buffer.from(suffix)]);
      const headers = { 'content-type': 'application/json' };
      const rename = await alice.request('PATCH', `/api/files/${file.id}`, { body: withByte('{"name":"a', 'b.txt"}'), headers });
      const create = await alice.request('POST', '/api/uploads', {
        body: withByte('{"name":"a', `b.bin","size":16,"sha1":"${sha1(bytes)}"}`),
        headers,
      });
      const folder = await alice.request('POST', '/api/folders', { body: withByte('{"path":"/a', 'b"}'), headers });
      for (const res of [rename, create, folder]) {
        expect(res.status).toBe(400);
        expect(expectErrorBody(res.json).code).toBe('invalid_input');
      }
      expect((await alice.get(`/api/files/${file.id}`)).json).toMatchObject({ name: 'keep.bin', folder: '/' });
      expect(await userFileCount(alice.userId)).toBe(1);
      expect((await alice.get('/api/files?folder=/')).json.folders).toEqual([]);
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
