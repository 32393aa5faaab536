import { randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Locker } from '@tus/utils';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { availableProfiles, useApp } from '../support/app.js';
import { expectErrorBody, newUser, sha1 } from '../support/files.js';
import { createTusUpload, tusPatch, tusRequest } from '../support/tus.js';

const profiles = await availableProfiles('tus cors');

/** A page of another site, as a browser names it in every cross-origin request. */
const ORIGIN = 'https://app.example';
const metadataOf = (filename: string) => `filename ${Buffer.from(filename).toString('base64')}`;
const listed = (value: string | null) => (value ?? '').split(',').map((name) => name.trim().toLowerCase()).filter(Boolean);

/** What a browser needs to hand an answer's status, body and these headers to the page's script. */
function expectReadableCrossOrigin(answer: Response, headers: string[] = ['tus-resumable']) {
  expect(answer.headers.get('access-control-allow-origin')).toBe('*');
  expect(listed(answer.headers.get('access-control-expose-headers'))).toEqual(expect.arrayContaining(headers));
}

describe.each(profiles)('tus from a browser page on another origin (%s profile)', (profile) => {
  const app = useApp(profile, { TUS_LOCK_TIMEOUT_SECONDS: '1' });
  const tusUrl = () => `${app.baseUrl}/api/tus`;
  afterEach(() => vi.restoreAllMocks());

  it('answers the preflight of a PATCH with Upload-Checksum, and exposes the finished file id and the checksum algorithm', async () => {
    // as a browser sends it: no token, the method and the non-safelisted headers the PATCH will carry
    const requested = ['authorization', 'content-type', 'tus-resumable', 'upload-checksum', 'upload-offset'];
    const preflight = await fetch(tusUrl(), {
      method: 'OPTIONS',
      headers: { origin: ORIGIN, 'access-control-request-method': 'PATCH', 'access-control-request-headers': requested.join(',') },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe('*');
    expect(listed(preflight.headers.get('access-control-allow-methods'))).toEqual(expect.arrayContaining(['post', 'head', 'patch', 'delete']));
    expect(listed(preflight.headers.get('access-control-allow-headers'))).toEqual(expect.arrayContaining([...requested, 'upload-length', 'upload-metadata']));
    expect(preflight.headers.get('access-control-allow-credentials')).toBeNull();

    const alice = await newUser(app);
    const bytes = randomBytes(1000);
    const url = await createTusUpload(app.baseUrl, alice, bytes.length, { filename: 'cors.bin' });
    const digest = Buffer.from(sha1(bytes), 'hex').toString('base64');
    const finished = await tusPatch(alice, url, 0, bytes, { origin: ORIGIN, 'upload-checksum': `sha1 ${digest}` });
    expect(finished.status).toBe(204);
    expect(finished.headers.get('filestore-file-id')).toBeTruthy();
    expectReadableCrossOrigin(finished, ['filestore-file-id', 'tus-checksum-algorithm', 'upload-offset', 'tus-resumable']);
    expectReadableCrossOrigin(await tusRequest(alice, 'HEAD', url, { origin: ORIGIN }), ['filestore-file-id', 'upload-offset', 'upload-length']);
  });

  it("lets the page read the status and body of the endpoint's own refusals", async () => {
    const alice = await newUser(app);
    const bob = await newUser(app);
    const url = await createTusUpload(app.baseUrl, alice, 10, { filename: 'mine.bin' });
    const refusals: Array<[number, Response]> = [
      [401, await tusRequest({}, 'POST', tusUrl(), { origin: ORIGIN, 'upload-length': '10', 'upload-metadata': metadataOf('a.bin') })],
      [404, await tusRequest(bob, 'DELETE', url, { origin: ORIGIN })],
      [405, await tusRequest(alice, 'GET', url, { origin: ORIGIN })],
      [400, await tusRequest(alice, 'PATCH', url, { origin: ORIGIN, 'content-type': 'application/offset+octet-stream' }, Buffer.from('x'))],
      [412, await tusRequest(alice, 'DELETE', url, { origin: ORIGIN, 'tus-resumable': '0.2.2' })],
    ];
    for (const [status, answer] of refusals) {
      expect(answer.status).toBe(status);
      expectReadableCrossOrigin(answer);
      expect(expectErrorBody(await answer.json()).code).toBeTruthy();
    }
  });

  it('lets the page read a 423 from HEAD on a complete upload whose lock another request holds', async () => {
    const alice = await newUser(app);
    const bytes = randomBytes(100);
    await createTusUpload(app.baseUrl, alice, 1, { filename: 'taken.bin' }).then((url) => tusPatch(alice, url, 0, Buffer.from('x')));
    // every byte there, but the name is taken: complete and not linked, which HEAD tries again
    const url = await createTusUpload(app.baseUrl, alice, bytes.length, { filename: 'taken.bin' });
    expect((await tusPatch(alice, url, 0, bytes)).status).toBe(409);
    const holder = (app.services.tus.server.options.locker as Locker).newLock(new URL(url).pathname.split('/').pop()!);
    await holder.lock(new AbortController().signal, () => {});
    try {
      const locked = await tusRequest(alice, 'HEAD', url, { origin: ORIGIN });
      expect(locked.status).toBe(423);
      expectReadableCrossOrigin(locked);
    } finally {
      await holder.unlock();
    }
  });

  describe('a refused creation', () => {
    const tusDir = () => path.join(app.dataDir, 'tus');

    it('leaves nothing under DATA_DIR/tus when the full disk refuses its record (507)', async () => {
      const alice = await newUser(app);
      const before = await fsp.readdir(tusDir()).catch(() => []);
      // A full disk still creates an empty file (an inode, no data block): the upload's empty data file is
      // made, and its .json record is created empty, then its write fails with ENOSPC.
      const writeFile = fsp.writeFile;
      vi.spyOn(fsp, 'writeFile').mockImplementation(async (file, ...rest) => {
        if (!String(file).startsWith(tusDir()) || !String(file).endsWith('.json')) return writeFile(file, ...rest);
        await writeFile(file, '');
        throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
      });
      const refused = await tusRequest(alice, 'POST', tusUrl(), { origin: ORIGIN, 'upload-length': '10', 'upload-metadata': metadataOf('full.bin') });
      vi.restoreAllMocks();
      expect(refused.status).toBe(507);
      expect(expectErrorBody(await refused.json()).code).toBe('insufficient_storage');
      expectReadableCrossOrigin(refused);
      expect(await fsp.readdir(tusDir())).toEqual(before);
      // with space back, the same creation works
      await createTusUpload(app.baseUrl, alice, 10, { filename: 'full.bin' });
    });

    it('leaves nothing when the bytes it carried are refused (413), since its client never learns its URL', async () => {
      const alice = await newUser(app);
      const before = await fsp.readdir(tusDir()).catch(() => []);
      const refused = await tusRequest(
        alice,
        'POST',
        tusUrl(),
        { 'upload-length': '5', 'upload-metadata': metadataOf('long.bin'), 'content-type': 'application/offset+octet-stream' },
        randomBytes(10),
      );
      expect(refused.status).toBe(413);
      expect(refused.headers.get('location')).toBeNull();
      expect(await fsp.readdir(tusDir())).toEqual(before);
    });
  });
});
