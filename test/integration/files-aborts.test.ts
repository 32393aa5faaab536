import { randomBytes } from 'node:crypto';
import http from 'node:http';
import path from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { availableProfiles, useApp } from '../support/app.js';
import { newUser } from '../support/files.js';
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
  const app = useApp(profile);

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
});
