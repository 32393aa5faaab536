import { randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildProcessors } from '../../workers/processors/index.js';
import { availableProfiles, useApp, type RunningApp } from '../support/app.js';
import { blobFiles, newUser, sha1 } from '../support/files.js';
import { KiB, MiB, complete, putChunks, uploadChunked } from '../support/uploads.js';
import { contentOf } from '../support/workers.js';

/**
 * A `files` row against what links to it and what removes it: content whose bytes failed verification,
 * links deleted long ago, and collection running between the steps of an upload (forced by running the
 * gc processor from inside a repository call, never by timing). Both profiles; the content stays on the
 * local tier (no job runs here by itself).
 */
const profiles = await availableProfiles('content lifecycle');
type User = Awaited<ReturnType<typeof newUser>>;

const HOUR = 3600_000;

/**
 * Uploads `bytes` as `name` (and as `alsoBy`'s file too, linked to the same content), damages the stored
 * copy and has the verify processor mark it corrupt.
 */
async function storedCorrupt(app: RunningApp, user: User, name: string, bytes: Buffer, alsoBy?: User): Promise<{ fileId: string; contentId: number }> {
  const uploaded = await user.upload('/api/files', { name, bytes });
  expect(uploaded.status).toBe(201);
  if (alsoBy) expect((await alsoBy.upload('/api/files', { name, bytes })).status).toBe(201);
  const row = await contentOf(app, uploaded.json.id);
  const damaged = Buffer.from(bytes);
  damaged[0]! ^= 0xff;
  await fsp.writeFile(path.join(app.dataDir, 'blobs', row.location), damaged);
  await buildProcessors(app.services).verify({ fileId: row.id });
  expect((await contentOf(app, uploaded.json.id)).status).toBe('corrupt');
  return { fileId: uploaded.json.id, contentId: row.id };
}

/** Deletes the user's file and dates the deletion `agoMs` back: as if it happened that long ago. */
async function deletedLongAgo(app: RunningApp, user: User, fileId: string, agoMs: number): Promise<void> {
  expect((await user.request('DELETE', `/api/files/${fileId}`)).status).toBe(204);
  const past = Date.now() - agoMs;
  await app.services.db.primary('user_files').where({ id: fileId }).update({ updated_at: past });
}

describe.each(profiles)('content lifecycle (%s profile)', (profile) => {
  const app = useApp(profile);

  it('links an upload that revives corrupt content (201, exact bytes) though gc runs right after the revive: the last link deleted long ago does not make the revived row collectable', async () => {
    const alice = await newUser(app);
    const bob = await newUser(app);
    const bytes = randomBytes(MiB + 17);
    const { fileId, contentId } = await storedCorrupt(app, alice, 'old.bin', bytes);
    await deletedLongAgo(app, alice, fileId, 2 * HOUR);

    // gc runs between the revive (fresh bytes, no link yet) and the link of Bob's upload
    const { gc } = buildProcessors(app.services);
    const blobs = app.services.blobs;
    const revive = blobs.revive.bind(blobs);
    blobs.revive = async (...args) => {
      const revived = await revive(...args);
      if (revived) await gc({});
      return revived;
    };
    try {
      const { completed } = await uploadChunked(bob, bytes, { name: 'new.bin' });
      expect({ status: completed.status, code: completed.json?.error?.code }).toEqual({ status: 201, code: undefined });
      const download = await bob.get(`/api/files/${completed.json.id}/content`);
      expect(download.status).toBe(200);
      expect(download.bytes.equals(bytes)).toBe(true);
      expect(await contentOf(app, completed.json.id)).toMatchObject({ id: contentId, status: 'available', sha1: sha1(bytes) });
    } finally {
      blobs.revive = revive;
    }
  });

  it('keeps corrupt content while a file links it (409 corrupt), and collects it once the last link was deleted longer ago than the grace: no row, no blob file, no link rows left', async () => {
    const alice = await newUser(app);
    const bob = await newUser(app);
    const bytes = randomBytes(300 * KiB);
    const hash = sha1(bytes);
    const { fileId, contentId } = await storedCorrupt(app, alice, 'rotten.bin', bytes, bob);
    const bobs = (await bob.get('/api/files')).json.files[0].id as string;
    const { gc } = buildProcessors(app.services);
    const longAgo = async () => app.services.db.primary('files').where({ id: contentId }).update({ updated_at: Date.now() - 2 * HOUR });

    await deletedLongAgo(app, alice, fileId, 2 * HOUR);
    await longAgo();
    await gc({});
    expect((await contentOf(app, bobs)).status).toBe('corrupt');
    expect((await bob.get(`/api/files/${bobs}/content`)).json?.error?.code).toBe('corrupt');

    await deletedLongAgo(app, bob, bobs, 2 * HOUR);
    await gc({});
    expect(await app.services.db.primary('files').where({ sha1: hash }).first()).toBeUndefined();
    expect(await app.services.db.primary('user_files').where({ file_id: contentId }).first()).toBeUndefined();
    expect((await blobFiles(app)).filter((file) => file.includes(hash))).toEqual([]);
  });

  it('heals corrupt content when its owner uploads the good bytes again under the same name: the create asks for chunks (not "existing"), and the file downloads exactly', async () => {
    const alice = await newUser(app);
    const bytes = randomBytes(MiB + 5);
    const { fileId, contentId } = await storedCorrupt(app, alice, 'photo.bin', bytes);

    const created = await alice.post('/api/uploads', { name: 'photo.bin', size: bytes.length, sha1: sha1(bytes) });
    expect({ status: created.status, mode: created.json.mode }).toEqual({ status: 201, mode: 'chunks' });
    await putChunks(alice, created.json.uploadId, bytes, created.json.chunkSize, [...Array(created.json.chunkCount).keys()]);
    const completed = await complete(alice, created.json.uploadId);
    expect({ status: completed.status, id: completed.json.id }).toEqual({ status: 201, id: fileId });
    const download = await alice.get(`/api/files/${fileId}/content`);
    expect(download.status).toBe(200);
    expect(download.bytes.equals(bytes)).toBe(true);
    expect(await contentOf(app, fileId)).toMatchObject({ id: contentId, status: 'available' });
  });
});
