import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Upload } from 'tus-js-client';
import { describe, expect, it } from 'vitest';
import { availableProfiles, useApp } from '../support/app.js';
import { newUser, sha1 } from '../support/files.js';
import { createTusUpload, tusPatch, tusRequest } from '../support/tus.js';
import { MiB } from '../support/uploads.js';

const profiles = await availableProfiles('tus protocol');

const TUS = { 'tus-resumable': '1.0.0' };
const metadataOf = (filename: string) => `filename ${Buffer.from(filename).toString('base64')}`;

/**
 * A reverse proxy in front of the app, as nginx `proxy_pass http://filestore_upstream;` behind TLS: the
 * app sees the upstream's name as Host (which no client can reach) and X-Forwarded-* naming a front it
 * cannot be reached at either. Only a Location resolved against the URL the client used comes back here.
 */
async function startProxy(appUrl: string) {
  const forwarded: string[] = [];
  const server = http.createServer((req, res) => {
    forwarded.push(req.method!);
    const headers = { ...req.headers, host: 'filestore-upstream.invalid:3000', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'files.invalid' };
    const upstream = http.request({ host: '127.0.0.1', port: new URL(appUrl).port, method: req.method, path: req.url, headers }, (answer) => {
      res.writeHead(answer.statusCode!, answer.headers);
      answer.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(undefined)));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    forwarded,
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}

describe.each(profiles)('tus protocol (%s profile)', (profile) => {
  const app = useApp(profile);

  it('behind a reverse proxy that rewrites Host, tus-js-client finishes an upload through the proxy', async () => {
    const alice = await newUser(app);
    const proxy = await startProxy(app.baseUrl);
    try {
      const bytes = randomBytes(2 * MiB + 123);
      const uploadUrl = await new Promise<string>((resolve, reject) => {
        const upload = new Upload(bytes, {
          endpoint: `${proxy.url}/api/tus`,
          headers: { authorization: `Bearer ${alice.token}` },
          chunkSize: MiB,
          retryDelays: null,
          metadata: { filename: 'proxied.bin', folder: '/proxied' },
          onSuccess: () => resolve(upload.url!),
          onError: reject,
        });
        upload.start();
      });
      expect(new URL(uploadUrl).origin).toBe(proxy.url);
      expect(proxy.forwarded.filter((method) => method === 'PATCH')).toHaveLength(3);
      const files = (await alice.get('/api/files?folder=/proxied')).json.files;
      expect(files).toEqual([expect.objectContaining({ name: 'proxied.bin', size: bytes.length, sha1: sha1(bytes) })]);
    } finally {
      await proxy.close();
    }
  });

  it('behind that proxy, a Location resolved against the endpoint takes HEAD and PATCH, checksummed creations included', async () => {
    const alice = await newUser(app);
    const proxy = await startProxy(app.baseUrl);
    try {
      const endpoint = `${proxy.url}/api/tus`;
      const bytes = randomBytes(1000);
      const created = await tusRequest(alice, 'POST', endpoint, { 'upload-length': String(bytes.length), 'upload-metadata': metadataOf('raw.bin') });
      expect(created.status).toBe(201);
      const url = new URL(created.headers.get('location')!, endpoint);
      expect(url.origin).toBe(proxy.url);
      expect((await tusRequest(alice, 'HEAD', url.toString())).headers.get('upload-offset')).toBe('0');
      expect((await tusPatch(alice, url.toString(), 0, bytes)).status).toBe(204);
      expect((await tusRequest(alice, 'HEAD', url.toString())).headers.get('upload-offset')).toBe(String(bytes.length));

      // creation-with-upload carrying Upload-Checksum takes another path through the server
      const first = bytes.subarray(0, 100);
      const withBytes = await tusRequest(alice, 'POST', endpoint, {
        'upload-length': String(bytes.length), 'upload-metadata': metadataOf('checked.bin'), 'content-type': 'application/offset+octet-stream',
        'upload-checksum': `sha1 ${createHash('sha1').update(first).digest('base64')}`,
      }, first);
      expect(withBytes.status).toBe(201);
      const checked = new URL(withBytes.headers.get('location')!, endpoint);
      expect(checked.origin).toBe(proxy.url);
      expect((await tusPatch(alice, checked.toString(), 100, bytes.subarray(100))).status).toBe(204);
      const names = (await alice.get('/api/files')).json.files.map((file: { name: string }) => file.name).sort();
      expect(names).toEqual(['checked.bin', 'raw.bin']);
    } finally {
      await proxy.close();
    }
  });

  it('puts Tus-Resumable: 1.0.0 on its own refusals: no or a bad token, another user\'s upload, a malformed PATCH, GET', async () => {
    const alice = await newUser(app);
    const mallory = await newUser(app);
    const url = await createTusUpload(app.baseUrl, alice, 10, { filename: 'mine.bin' });
    const anonymous = (method: string, target: string, authorization?: string) =>
      fetch(target, { method, headers: { ...TUS, ...(authorization ? { authorization } : {}), 'upload-length': '1' } });
    const refusals: Array<[string, Response, number]> = [
      ['POST without a token', await anonymous('POST', `${app.baseUrl}/api/tus`), 401],
      ['HEAD without a token', await anonymous('HEAD', url), 401],
      ['DELETE with a bad token', await anonymous('DELETE', url, 'Bearer not.a.token'), 401],
      ['HEAD of another user\'s upload', await tusRequest(mallory, 'HEAD', url), 404],
      ['PATCH of another user\'s upload', await tusPatch(mallory, url, 0, randomBytes(10)), 404],
      ['HEAD of no upload', await tusRequest(alice, 'HEAD', `${app.baseUrl}/api/tus/${'0'.repeat(32)}`), 404],
      ['PATCH without Upload-Offset', await tusRequest(alice, 'PATCH', url, { 'content-type': 'application/offset+octet-stream' }, randomBytes(10)), 400],
      ['GET', await tusRequest(alice, 'GET', url), 405],
      ['PATCH past the end', await tusPatch(alice, url, 0, randomBytes(20)), 413],
      ['PATCH with a wrong checksum', await tusPatch(alice, url, 0, randomBytes(10), { 'upload-checksum': `sha1 ${createHash('sha1').update('x').digest('base64')}` }), 460],
    ];
    for (const [what, answer, status] of refusals) {
      expect({ what, status: answer.status, tusResumable: answer.headers.get('tus-resumable') }).toEqual({ what, status, tusResumable: '1.0.0' });
    }
  });

  it('answers OPTIONS without a token (discovery, CORS preflight) with the server\'s capabilities only; every other method still needs one', async () => {
    const alice = await newUser(app);
    const url = await createTusUpload(app.baseUrl, alice, 10, { filename: 'private.bin' });
    for (const target of [`${app.baseUrl}/api/tus`, url]) {
      const answer = await fetch(target, {
        method: 'OPTIONS',
        headers: { origin: 'https://app.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, tus-resumable' },
      });
      expect(answer.status).toBe(204);
      expect(answer.headers.get('tus-version')).toBe('1.0.0');
      expect(answer.headers.get('tus-extension')).toContain('creation');
      expect(answer.headers.get('tus-max-size')).toBe(String(app.services.config.MAX_UPLOAD_BYTES));
      expect(answer.headers.get('access-control-allow-methods')).toContain('PATCH');
      expect([...answer.headers.keys()].filter((name) => name.startsWith('upload-'))).toEqual([]);
    }
    for (const method of ['HEAD', 'PATCH', 'DELETE']) {
      expect((await fetch(url, { method, headers: TUS })).status).toBe(401);
    }
    expect((await fetch(`${app.baseUrl}/api/tus`, { method: 'POST', headers: { ...TUS, 'upload-length': '1', 'upload-metadata': metadataOf('x.bin') } })).status).toBe(401);
    expect((await tusRequest(alice, 'HEAD', url)).headers.get('upload-length')).toBe('10');
  });

  it('takes X-HTTP-Method-Override as the method (tus 1.0): POSTs overridden to PATCH, HEAD and DELETE act as those, still only on one\'s own upload', async () => {
    const alice = await newUser(app);
    const mallory = await newUser(app);
    const bytes = randomBytes(1000);
    const url = await createTusUpload(app.baseUrl, alice, 2 * bytes.length, { filename: 'overridden.bin' });
    const overridden = (user: { token?: string }, method: string, headers: Record<string, string> = {}, body?: Buffer) =>
      tusRequest(user, 'POST', url, { 'x-http-method-override': method, ...headers }, body);

    const patched = await overridden(alice, 'PATCH', { 'upload-offset': '0', 'content-type': 'application/offset+octet-stream' }, bytes);
    expect(patched.status).toBe(204);
    expect(patched.headers.get('upload-offset')).toBe(String(bytes.length));
    expect((await overridden(alice, 'HEAD')).headers.get('upload-offset')).toBe(String(bytes.length));
    expect((await overridden(alice, 'GET')).status).toBe(405);
    expect((await overridden(mallory, 'DELETE')).status).toBe(404);
    expect((await overridden(alice, 'DELETE')).status).toBe(204);
    expect((await tusRequest(alice, 'HEAD', url)).status).toBe(404);
  });
});
