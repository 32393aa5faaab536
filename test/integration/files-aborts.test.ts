import { randomBytes } from 'node:crypto';
import http from 'node:http';
import path from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { availableProfiles, useApp } from '../support/app.js';
import { newUser, tempFiles } from '../support/files.js';
import { MiB } from '../support/uploads.js';
import { openFilesUnder, sleep } from '../support/workers.js';

const profiles = await availableProfiles('files aborts');

/** A request sent by hand, so the test decides when the client hangs up; errors of the cut are expected. */
function rawRequest(baseUrl: string, method: string, urlPath: string, headers: Record<string, string>): http.ClientRequest {
  const req = http.request(`${baseUrl}${urlPath}`, { method, headers, agent: false });
  req.on('error', () => undefined);
  return req;
}

describe.each(profiles)('clients that hang up on /api/files (%s profile)', (profile) => {
  const logLines: Array<Record<string, unknown>> = [];
  const app = useApp(profile, {}, { logLines });
  const linesOf = (reqId: string) => logLines.filter((line) => line.reqId === reqId);

  it('closes the blob file of a download whose client hung up while the content was being opened', async () => {
    const alice = await newUser(app);
    const { json: file } = await alice.upload('/api/files', { name: 'early.bin', bytes: randomBytes(4 * MiB) });
    const { content } = app.services;
    const read = content.read.bind(content);
    let reached!: () => void;
    const opening = new Promise<void>((resolve) => (reached = resolve));
    let hungUp!: () => void;
    const gone = new Promise<void>((resolve) => (hungUp = resolve));
    // the content is opened only once the client is gone, as when it hangs up during the lookups
    const spy = vi.spyOn(content, 'read').mockImplementation(async (...args) => {
      reached();
      await gone;
      return read(...args);
    });
    try {
      const req = rawRequest(app.baseUrl, 'GET', `/api/files/${file.id}/content`, { authorization: `Bearer ${alice.token}` });
      req.end();
      await opening;
      req.destroy();
      await sleep(200);
      hungUp();
      await expect.poll(() => spy.mock.results.length).toBe(1);
      await expect.poll(() => openFilesUnder(path.join(app.dataDir, 'blobs')), { timeout: 2000 }).toBe(0);
    } finally {
      spy.mockRestore();
    }
    // and the file is still served whole
    const again = await alice.get(`/api/files/${file.id}/content`);
    expect(again.status).toBe(200);
    expect(again.bytes.length).toBe(4 * MiB);
  });

  it('logs an upload the client abandons midway as an aborted request (warn), not as a server error, and keeps no temp file', async () => {
    const alice = await newUser(app);
    const reqId = `abandoned-upload-${randomBytes(4).toString('hex')}`;
    const boundary = 'filestore-abandoned';
    const req = rawRequest(app.baseUrl, 'POST', '/api/files', {
      authorization: `Bearer ${alice.token}`,
      'content-type': `multipart/form-data; boundary=${boundary}`,
      'content-length': String(8 * MiB),
      'x-request-id': reqId,
    });
    req.write(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="half.bin"\r\n\r\n`);
    req.write(randomBytes(MiB));
    await expect.poll(() => tempFiles(app)).toHaveLength(1);
    req.destroy();

    await expect.poll(() => tempFiles(app)).toEqual([]);
    await expect.poll(() => linesOf(reqId).map((line) => line.msg)).toContain('request aborted');
    // the error handler runs once multer gave up on the body: give it the time to log, if it would
    await sleep(300);
    expect(linesOf(reqId).filter((line) => Number(line.level) >= 50)).toEqual([]);
    expect((await alice.get('/api/files')).json.files).toEqual([]);
  });
});
