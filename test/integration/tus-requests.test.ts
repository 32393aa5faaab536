import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { availableProfiles, useApp, type RunningApp } from '../support/app.js';
import { expectErrorBody, filesUnder, newUser, tempFiles } from '../support/files.js';
import { createTusUpload, tusPatch, tusRequest } from '../support/tus.js';

const profiles = await availableProfiles('tus requests');

type User = Awaited<ReturnType<typeof newUser>>;
const base64Sha1 = (bytes: Buffer) => createHash('sha1').update(bytes).digest('base64');

/** A raw request, so a test controls what the client sends: headers fetch would fix, a body sent in part. */
function rawRequest(app: RunningApp, options: http.RequestOptions, body: Buffer): Promise<{ status: number; json: unknown }> {
  return new Promise((resolve, reject) => {
    const { port } = new URL(app.baseUrl);
    const request = http.request({ host: '127.0.0.1', port, ...options }, (response) => {
      const pieces: Buffer[] = [];
      response.on('data', (piece: Buffer) => pieces.push(piece));
      response.on('end', () => resolve({ status: response.statusCode!, json: JSON.parse(Buffer.concat(pieces).toString() || 'null') }));
    });
    request.on('error', reject);
    // the body is written but the request is left open: an answer can only come before the rest is sent
    request.write(body);
  });
}

describe.each(profiles)('tus requests the endpoint refuses (%s profile)', (profile) => {
  const app = useApp(profile);
  const offsetOf = async (user: User, url: string) => (await tusRequest(user, 'HEAD', url)).headers.get('upload-offset');

  it("answers 404 to another user's upload id put in a query string, and leaves the upload alone", async () => {
    const alice = await newUser(app);
    const mallory = await newUser(app);
    const bytes = randomBytes(1000);
    const url = await createTusUpload(app.baseUrl, alice, bytes.length, { filename: 'mine.bin' });
    const id = new URL(url).pathname.split('/').pop()!;
    const own = await createTusUpload(app.baseUrl, mallory, 10, { filename: 'decoy.bin' });

    const sneaky = `${app.baseUrl}/api/tus?x=/${id}`;
    expect((await tusRequest(mallory, 'HEAD', sneaky)).status).toBe(404);
    expect((await tusPatch(mallory, sneaky, 0, bytes)).status).toBe(404);
    expect((await tusRequest(mallory, 'DELETE', sneaky)).status).toBe(404);
    // behind her own upload's URL, the query is not read at all: she reaches her own upload only
    const behindOwn = await tusRequest(mallory, 'HEAD', `${own}?x=/${id}`);
    expect(behindOwn.headers.get('upload-length')).toBe('10');
    expect((await tusRequest(mallory, 'DELETE', `${own}?x=/${id}`)).status).toBe(204);
    expect((await tusRequest(mallory, 'HEAD', own)).status).toBe(404);
    expect(await offsetOf(alice, url)).toBe('0');
    expect((await tusPatch(alice, url, 0, bytes)).status).toBe(204);
    expect((await mallory.get('/api/files')).json.files).toEqual([]);
  });

  it('answers GET with 405 and Allow, never the bytes of an upload', async () => {
    const alice = await newUser(app);
    const url = await createTusUpload(app.baseUrl, alice, 100, { filename: 'hidden.bin' });
    expect((await tusPatch(alice, url, 0, randomBytes(100))).status).toBe(204);
    for (const target of [url, `${app.baseUrl}/api/tus`]) {
      const answer = await tusRequest(alice, 'GET', target);
      expect(answer.status).toBe(405);
      expect(answer.headers.get('allow')).toBe('OPTIONS, HEAD, POST, PATCH, DELETE');
      expect(expectErrorBody(await answer.json()).code).toBe('method_not_allowed');
    }
  });

  it('refuses a filename or folder in metadata whose bytes are not UTF-8 with 400, rather than store another name', async () => {
    const alice = await newUser(app);
    // "a", the encoding of a lone surrogate (no UTF-8 form), "b"; the folder with a leading "/"
    const notUtf8 = (...prefix: number[]) => Buffer.from([...prefix, 0x61, 0xed, 0xa0, 0x80, 0x62]).toString('base64');
    for (const [metadata, code] of [[`filename ${notUtf8()}`, 'invalid_name'], [`filename ${Buffer.from('ok.bin').toString('base64')},folder ${notUtf8(0x2f)}`, 'invalid_path']]) {
      const answer = await tusRequest(alice, 'POST', `${app.baseUrl}/api/tus`, { 'upload-length': '10', 'upload-metadata': metadata! });
      expect(answer.status).toBe(400);
      expect(expectErrorBody(await answer.json()).code).toBe(code);
    }
  });

  it('answers a Tus-Resumable version it does not speak with 412 and the version it does', async () => {
    const alice = await newUser(app);
    const answer = await tusRequest(alice, 'POST', `${app.baseUrl}/api/tus`, { 'tus-resumable': '0.2.2', 'upload-length': '1' });
    expect(answer.status).toBe(412);
    expect(answer.headers.get('tus-version')).toBe('1.0.0');
    expect(expectErrorBody(await answer.json()).code).toBe('invalid_input');
  });

  it('answers a PATCH without a numeric Upload-Offset or without the tus content type with 400, and writes nothing', async () => {
    const alice = await newUser(app);
    const url = await createTusUpload(app.baseUrl, alice, 100, { filename: 'strict.bin' });
    const body = randomBytes(100);
    const refusals = [
      await tusRequest(alice, 'PATCH', url, { 'content-type': 'application/offset+octet-stream' }, body),
      await tusRequest(alice, 'PATCH', url, { 'content-type': 'application/offset+octet-stream', 'upload-offset': '-1' }, body),
      await tusRequest(alice, 'PATCH', url, { 'upload-offset': '0' }, body),
    ];
    for (const refusal of refusals) {
      expect(refusal.status).toBe(400);
      expect(expectErrorBody(await refusal.json()).code).toBe('invalid_input');
    }
    expect(await offsetOf(alice, url)).toBe('0');
  });

  it('refuses a checksummed PATCH at a wrong offset (409) or longer than the upload has room for (413) before reading its body', async () => {
    const alice = await newUser(app);
    const url = await createTusUpload(app.baseUrl, alice, 1000, { filename: 'early.bin' });
    const { pathname } = new URL(url);
    const headers = (offset: number, length: number) => ({
      authorization: `Bearer ${alice.token}`, 'tus-resumable': '1.0.0', 'content-type': 'application/offset+octet-stream',
      'upload-offset': String(offset), 'content-length': String(length), 'upload-checksum': `sha1 ${base64Sha1(Buffer.alloc(1))}`,
    });
    const wrongOffset = await rawRequest(app, { method: 'PATCH', path: pathname, headers: headers(10, 100) }, randomBytes(10));
    expect(wrongOffset.status).toBe(409);
    expect(expectErrorBody(wrongOffset.json).code).toBe('upload_state');
    const tooLong = await rawRequest(app, { method: 'PATCH', path: pathname, headers: headers(0, 50 * 1024 * 1024) }, randomBytes(1024));
    expect(tooLong.status).toBe(413);
    expect(expectErrorBody(tooLong.json).code).toBe('payload_too_large');
    expect(await tempFiles(app)).toEqual([]);
    expect(await offsetOf(alice, url)).toBe('0');
  });

  it('checks Upload-Checksum on a creation that carries bytes: a mismatch answers 460 and creates nothing, a match 201 at their end', async () => {
    const alice = await newUser(app);
    const bytes = randomBytes(3000);
    const first = bytes.subarray(0, 1000);
    const create = (digest: string) => tusRequest(alice, 'POST', `${app.baseUrl}/api/tus`, {
      'upload-length': String(bytes.length), 'upload-metadata': `filename ${Buffer.from('sent.bin').toString('base64')}`,
      'content-type': 'application/offset+octet-stream', 'upload-checksum': `sha1 ${digest}`,
    }, first);
    const tusDir = path.join(app.dataDir, 'tus');
    const before = await filesUnder(tusDir);
    const wrong = await create(base64Sha1(bytes));
    expect(wrong.status).toBe(460);
    expect(wrong.headers.get('location')).toBeNull();
    expect(await filesUnder(tusDir)).toEqual(before);
    const right = await create(base64Sha1(first));
    expect(right.status).toBe(201);
    expect(right.headers.get('upload-offset')).toBe(String(first.length));
    const url = new URL(right.headers.get('location')!, app.baseUrl).toString();
    expect((await tusPatch(alice, url, first.length, bytes.subarray(first.length))).status).toBe(204);
  });

  it('serves a checksummed PATCH whatever its Host header says', async () => {
    const alice = await newUser(app);
    const bytes = randomBytes(64);
    const url = await createTusUpload(app.baseUrl, alice, bytes.length, { filename: 'hosted.bin' });
    const answer = await new Promise<number>((resolve, reject) => {
      const request = http.request(url, {
        method: 'PATCH',
        headers: {
          host: 'a b', authorization: `Bearer ${alice.token}`, 'tus-resumable': '1.0.0', 'content-type': 'application/offset+octet-stream',
          'upload-offset': '0', 'upload-checksum': `sha1 ${base64Sha1(bytes)}`,
        },
      }, (response) => resolve(response.resume().statusCode!));
      request.on('error', reject);
      request.end(bytes);
    });
    expect(answer).toBe(204);
    expect(await offsetOf(alice, url)).toBe(String(bytes.length));
  });
});

describe.each(profiles)('tus uploads past their expiry (%s profile)', (profile) => {
  const app = useApp(profile, { UPLOAD_TTL_SECONDS: '2' });

  it('sweeps expired uploads, the empty and the finished ones included', async () => {
    const alice = await newUser(app);
    const empty = await createTusUpload(app.baseUrl, alice, 0, { filename: 'empty.bin' });
    const finished = await createTusUpload(app.baseUrl, alice, 10, { filename: 'done.bin' });
    expect((await tusPatch(alice, finished, 0, randomBytes(10))).status).toBe(204);
    const open = await createTusUpload(app.baseUrl, alice, 10, { filename: 'open.bin' });
    await new Promise((resolve) => setTimeout(resolve, 2100));
    expect(await app.services.tus.collectExpired()).toBeGreaterThanOrEqual(3);
    for (const url of [empty, finished, open]) expect([404, 410]).toContain((await tusRequest(alice, 'HEAD', url)).status);
    const left = (await filesUnder(path.join(app.dataDir, 'tus'))).filter((name) => [empty, finished, open].some((url) => url.endsWith(name.split('.')[0]!)));
    expect(left).toEqual([]);
    expect((await alice.get('/api/files')).json.files.map((file: { name: string }) => file.name).sort()).toEqual(['done.bin', 'empty.bin']);
  });
});
