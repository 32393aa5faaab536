import { randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Locker } from '@tus/utils';
import { Upload } from 'tus-js-client';
import { describe, expect, it } from 'vitest';
import { availableProfiles, useApp, type RunningApp } from '../support/app.js';
import { expectErrorBody, filesUnder, newUser, sha1 } from '../support/files.js';
import { createTusUpload, tusPatch, tusRequest } from '../support/tus.js';
import { MiB } from '../support/uploads.js';

const profiles = await availableProfiles('tus finishing');

type User = Awaited<ReturnType<typeof newUser>>;

const headFileId = async (user: User, url: string) => (await tusRequest(user, 'HEAD', url)).headers.get('filestore-file-id');

/** A tus upload holding every byte of `bytes` but not linked: its name was taken, then freed. */
async function completeButUnlinked(app: RunningApp, user: User, name: string, bytes: Buffer): Promise<{ url: string; id: string }> {
  const blocker = await user.upload('/api/files', { name, bytes: randomBytes(10) });
  const url = await createTusUpload(app.baseUrl, user, bytes.length, { filename: name });
  expect((await tusPatch(user, url, 0, bytes)).status).toBe(409);
  expect((await user.request('DELETE', `/api/files/${blocker.json.id}`)).status).toBe(204);
  return { url, id: new URL(url).pathname.split('/').pop()! };
}

/**
 * @tus/server runs the finish hook after letting go of the upload's lock, and again for any PATCH that
 * finds the upload complete (an empty one): these tests hold the endpoint to "linked once, from the
 * upload's own bytes".
 */
describe.each(profiles)('finishing a tus upload (%s profile)', (profile) => {
  const app = useApp(profile);
  const rowsOf = (user: User) => app.services.db.primary('user_files').where({ user_id: user.userId, status: 'available' });

  it('links a finished upload once: an empty PATCH at its end answers the same file and links nothing, even after that file was deleted', async () => {
    const alice = await newUser(app);
    const bytes = randomBytes(MiB + 17);
    const url = await createTusUpload(app.baseUrl, alice, bytes.length, { filename: 'once.bin', folder: '/t' });
    const finished = await tusPatch(alice, url, 0, bytes);
    expect(finished.status).toBe(204);
    const fileId = finished.headers.get('filestore-file-id');
    expect(fileId).toMatch(/./);

    const again = await tusPatch(alice, url, bytes.length, Buffer.alloc(0));
    expect(again.status).toBe(204);
    expect(again.headers.get('filestore-file-id')).toBe(fileId);
    expect(await rowsOf(alice)).toHaveLength(1);

    expect((await alice.request('DELETE', `/api/files/${fileId}`)).status).toBe(204);
    const afterDelete = await tusPatch(alice, url, bytes.length, Buffer.alloc(0));
    expect(afterDelete.status).toBe(204);
    expect(afterDelete.headers.get('filestore-file-id')).toBe(fileId);
    expect(await rowsOf(alice)).toHaveLength(0);
    expect((await alice.get('/api/files?folder=%2Ft')).json.files).toEqual([]);
  });

  it('keeps the bytes of an upload whose name was taken (409): once the name is free, an empty PATCH links exactly them', async () => {
    const alice = await newUser(app);
    const first = await alice.upload('/api/files', { name: 'clash.bin', bytes: randomBytes(1000) }, { folder: '/t' });
    expect(first.status).toBe(201);
    const bytes = randomBytes(2 * MiB + 3);
    const url = await createTusUpload(app.baseUrl, alice, bytes.length, { filename: 'clash.bin', folder: '/t' });

    const refused = await tusPatch(alice, url, 0, bytes);
    expect(refused.status).toBe(409);
    expect(expectErrorBody(await refused.json()).code).toBe('name_conflict');
    expect(await headFileId(alice, url)).toBeNull();

    expect((await alice.request('DELETE', `/api/files/${first.json.id}`)).status).toBe(204);
    const linked = await tusPatch(alice, url, bytes.length, Buffer.alloc(0));
    expect(linked.status).toBe(204);
    const fileId = linked.headers.get('filestore-file-id')!;
    expect(await headFileId(alice, url)).toBe(fileId);
    const file = (await alice.get(`/api/files/${fileId}`)).json;
    expect(file).toMatchObject({ name: 'clash.bin', folder: '/t', size: bytes.length, sha1: sha1(bytes) });
    expect((await alice.get(`/api/files/${fileId}/content`)).bytes.equals(bytes)).toBe(true);
  });

  it('links on HEAD an upload that holds every byte but was never linked (as after a crash before its link): a resuming tus-js-client finds its file', async () => {
    const alice = await newUser(app);
    const bytes = randomBytes(MiB + 99);
    const { url } = await completeButUnlinked(app, alice, 'later.bin', bytes);

    const requests: string[] = [];
    await new Promise<void>((resolve, reject) => {
      const resumed = new Upload(bytes, {
        uploadUrl: url,
        headers: { authorization: `Bearer ${alice.token}` },
        retryDelays: null,
        onBeforeRequest: (req) => void requests.push(req.getMethod()),
        onSuccess: () => resolve(),
        onError: reject,
      });
      resumed.start();
    });
    expect(requests).toEqual(['HEAD']);
    const files = (await alice.get('/api/files')).json.files;
    expect(files).toEqual([expect.objectContaining({ name: 'later.bin', size: bytes.length, sha1: sha1(bytes) })]);
    expect(await headFileId(alice, url)).toBe(files[0].id);
    expect((await alice.get(`/api/files/${files[0].id}/content`)).bytes.equals(bytes)).toBe(true);
  });

  it('removes a creation that carried every byte and was refused for its name: 409, and nothing is left under DATA_DIR/tus', async () => {
    const alice = await newUser(app);
    expect((await alice.upload('/api/files', { name: 'taken.bin', bytes: randomBytes(10) })).status).toBe(201);
    const tusDir = path.join(app.dataDir, 'tus');
    const before = await filesUnder(tusDir);
    const bytes = randomBytes(1000);
    const created = await tusRequest(alice, 'POST', `${app.baseUrl}/api/tus`, {
      'upload-length': String(bytes.length), 'upload-metadata': `filename ${Buffer.from('taken.bin').toString('base64')}`,
      'content-type': 'application/offset+octet-stream',
    }, bytes);
    expect(created.status).toBe(409);
    expect(expectErrorBody(await created.json()).code).toBe('name_conflict');
    expect(await filesUnder(tusDir)).toEqual(before);
  });

  it('links one file when several empty PATCHes finish the same upload at once', async () => {
    const alice = await newUser(app);
    const bytes = randomBytes(MiB + 1);
    const { url } = await completeButUnlinked(app, alice, 'race.bin', bytes);

    const answers = await Promise.all(Array.from({ length: 4 }, () => tusPatch(alice, url, bytes.length, Buffer.alloc(0))));
    expect(answers.map((answer) => answer.status)).toEqual([204, 204, 204, 204]);
    const fileIds = new Set(answers.map((answer) => answer.headers.get('filestore-file-id')));
    expect(fileIds.size).toBe(1);
    const rows = await rowsOf(alice);
    expect(rows).toHaveLength(1);
    expect((await alice.get(`/api/files/${[...fileIds][0]}/content`)).bytes.equals(bytes)).toBe(true);
  });

  it('ignores a fileId a client puts in its metadata: the upload is linked as usual and HEAD shows the real file', async () => {
    const alice = await newUser(app);
    const bytes = randomBytes(5000);
    const url = await createTusUpload(app.baseUrl, alice, bytes.length, { filename: 'claimed.bin', fileId: 'someone-elses-file' });
    const finished = await tusPatch(alice, url, 0, bytes);
    expect(finished.status).toBe(204);
    const fileId = finished.headers.get('filestore-file-id');
    expect(fileId).not.toBe('someone-elses-file');
    expect((await alice.get(`/api/files/${fileId}/content`)).bytes.equals(bytes)).toBe(true);
    const head = await tusRequest(alice, 'HEAD', url);
    expect(head.headers.get('filestore-file-id')).toBe(fileId);
    expect(head.headers.get('upload-metadata')).toBe(`filename ${Buffer.from('claimed.bin').toString('base64')},folder ${Buffer.from('/').toString('base64')}`);
  });
});

describe.each(profiles)('linking a complete tus upload on HEAD, at the edges (%s profile)', (profile) => {
  const app = useApp(profile, { UPLOAD_TTL_SECONDS: '3', TUS_LOCK_TIMEOUT_SECONDS: '1' });

  const holdLock = async (id: string) => {
    const holder = (app.services.tus.server.options.locker as Locker).newLock(id);
    await holder.lock(new AbortController().signal, () => {});
    return holder;
  };

  it('answers HEAD 423 (with Tus-Resumable) when another request holds the upload past the lock timeout, and links once it lets go', async () => {
    const alice = await newUser(app);
    const bytes = randomBytes(MiB);
    const { url, id } = await completeButUnlinked(app, alice, 'held.bin', bytes);
    const holder = await holdLock(id);
    const locked = await tusRequest(alice, 'HEAD', url);
    expect(locked.status).toBe(423);
    expect(locked.headers.get('tus-resumable')).toBe('1.0.0');
    await holder.unlock();
    expect(await headFileId(alice, url)).toMatch(/./);
    expect((await alice.get('/api/files')).json.files.map((file: { name: string }) => file.name)).toEqual(['held.bin']);
  });

  it('answers HEAD 404 when the upload is removed while HEAD waits to link it', async () => {
    const alice = await newUser(app);
    const { url, id } = await completeButUnlinked(app, alice, 'removed.bin', randomBytes(MiB));
    const holder = await holdLock(id);
    const head = tusRequest(alice, 'HEAD', url);
    await new Promise((resolve) => setTimeout(resolve, 200));
    for (const file of [id, `${id}.json`]) await fsp.rm(path.join(app.dataDir, 'tus', file));
    await holder.unlock();
    expect((await head).status).toBe(404);
    expect((await alice.get('/api/files')).json.files).toEqual([]);
  });

  it('links nothing on HEAD once the upload has expired', async () => {
    const alice = await newUser(app);
    const { url } = await completeButUnlinked(app, alice, 'late.bin', randomBytes(MiB));
    await new Promise((resolve) => setTimeout(resolve, 3100));
    expect([404, 410]).toContain((await tusRequest(alice, 'HEAD', url)).status);
    expect((await alice.get('/api/files')).json.files).toEqual([]);
  });
});
