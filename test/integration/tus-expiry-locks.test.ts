import { randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import type { Locker } from '@tus/utils';
import { describe, expect, it, vi } from 'vitest';
import { availableProfiles, useApp } from '../support/app.js';
import { newUser, sha1 } from '../support/files.js';
import { createTusUpload, tusPatch } from '../support/tus.js';
import { MiB } from '../support/uploads.js';
import { downloadSha1, fileExists, runGc } from '../support/workers.js';

/**
 * gc's expiry sweep removes an expired tus upload under the upload's lock, the one @tus/server takes
 * (MemoryLocker embedded, Redis cluster): an upload a request holds is left for the next sweep, and the
 * holder is not asked to let go, so a PATCH in progress is neither cut nor written into a removed file.
 */
const profiles = await availableProfiles('tus expiry under the upload lock');
const TTL_SECONDS = 60;

describe.each(profiles)('the tus expiry sweep and the upload lock (%s profile)', (profile) => {
  const app = useApp(profile, { UPLOAD_TTL_SECONDS: String(TTL_SECONDS) });
  const idOf = (url: string) => path.basename(new URL(url).pathname);
  const filesOf = (url: string) => [path.join(app.dataDir, 'tus', idOf(url)), path.join(app.dataDir, 'tus', `${idOf(url)}.json`)];
  const present = async (url: string) => Promise.all(filesOf(url).map(fileExists));
  /** Moves the upload's creation date past the TTL, as time would. */
  const expire = async (url: string) => {
    const recordFile = filesOf(url)[1]!;
    const record = JSON.parse(await fsp.readFile(recordFile, 'utf8'));
    await fsp.writeFile(recordFile, JSON.stringify({ ...record, creation_date: new Date(Date.now() - 2 * TTL_SECONDS * 1000).toISOString() }));
  };

  it('leaves an expired upload whose lock is held, without asking the holder to let go, and removes it once let go', async () => {
    const alice = await newUser(app);
    const url = await createTusUpload(app.baseUrl, alice, 1000, { filename: 'held.bin' });
    expect((await tusPatch(alice, url, 0, randomBytes(100))).status).toBe(204);
    await expire(url);
    const holder = (app.services.tus.server.options.locker as Locker).newLock(idOf(url));
    let askedToLetGo = 0;
    await holder.lock(new AbortController().signal, () => void (askedToLetGo += 1));

    await runGc(app);
    expect(await present(url)).toEqual([true, true]);
    expect(askedToLetGo).toBe(0);

    await holder.unlock();
    await runGc(app);
    expect(await present(url)).toEqual([false, false]);
  });

  it('lets a PATCH that was writing when its upload expired finish and link its exact bytes, and removes the upload at the next sweep', { timeout: 30_000 }, async () => {
    const alice = await newUser(app);
    const bytes = randomBytes(3 * MiB);
    const url = await createTusUpload(app.baseUrl, alice, bytes.length, { filename: 'expired-while-writing.bin' });
    const writing = http.request(url, {
      method: 'PATCH',
      headers: { 'tus-resumable': '1.0.0', authorization: `Bearer ${alice.token}`, 'upload-offset': '0', 'content-type': 'application/offset+octet-stream', 'content-length': String(bytes.length) },
    });
    const answered = new Promise<http.IncomingMessage>((resolve, reject) => writing.once('response', resolve).once('error', reject));
    writing.write(bytes.subarray(0, 1.5 * MiB));
    await vi.waitFor(async () => expect((await fsp.stat(filesOf(url)[0]!)).size).toBeGreaterThanOrEqual(MiB), { timeout: 5000, interval: 20 });
    await expire(url);

    await runGc(app);
    writing.end(bytes.subarray(1.5 * MiB));
    const response = await answered;
    response.resume();
    expect(response.statusCode).toBe(204);
    const fileId = response.headers['filestore-file-id'] as string;
    expect(await downloadSha1(alice, fileId)).toEqual({ status: 200, sha1: sha1(bytes), size: bytes.length });
    expect(await present(url)).toEqual([true, true]);

    await runGc(app);
    expect(await present(url)).toEqual([false, false]);
    expect(await downloadSha1(alice, fileId)).toEqual({ status: 200, sha1: sha1(bytes), size: bytes.length });
  });
});
