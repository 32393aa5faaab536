import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { describe, expect, it } from 'vitest';
import { availableProfiles, useApp } from '../support/app.js';
import { newUser, plainGet, sha1 } from '../support/files.js';

const profiles = await availableProfiles('files conditional');

/** A HEAD through node:http with exactly the given headers (as plainGet, which see). */
function plainHead(baseUrl: string, path: string, headers: Record<string, string>) {
  return new Promise<{ status: number; headers: http.IncomingHttpHeaders }>((resolve, reject) => {
    const req = http.request(new URL(path, baseUrl), { method: 'HEAD', headers }, (res) => {
      res.resume().on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers }));
    });
    req.on('error', reject).end();
  });
}

describe.each(profiles)('conditional downloads with a Range (%s profile)', (profile) => {
  const app = useApp(profile);

  it('answers 304, not 416, when If-None-Match holds the current ETag and the Range lies past the end (GET and HEAD)', async () => {
    const alice = await newUser(app);
    const bytes = randomBytes(100);
    const { json: file } = await alice.upload('/api/files', { name: 'cached.bin', bytes });
    const path = `/api/files/${file.id}/content`;
    const auth = { authorization: `Bearer ${alice.token}` };
    const revalidate = { ...auth, 'if-none-match': `"${sha1(bytes)}"`, range: 'bytes=500-' };

    const cached = await plainGet(app.baseUrl, path, revalidate);
    expect(cached.status).toBe(304);
    expect(cached.bytes.length).toBe(0);
    expect(cached.headers.etag).toBe(`"${sha1(bytes)}"`);
    expect((await plainHead(app.baseUrl, path, revalidate)).status).toBe(304);

    // without a matching validator the Range is judged as before
    const unmatched = await plainGet(app.baseUrl, path, { ...auth, 'if-none-match': `"${'0'.repeat(40)}"`, range: 'bytes=500-' });
    expect(unmatched.status).toBe(416);
    expect(unmatched.headers['content-range']).toBe('bytes */100');
  });
});
