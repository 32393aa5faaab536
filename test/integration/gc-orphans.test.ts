import { randomBytes, randomUUID } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { UploadStaging } from '../../src/upload/staging.js';
import { buildProcessors } from '../../workers/processors/index.js';
import { availableProfiles, useApp, type RunningApp } from '../support/app.js';
import { blobFiles, newUser, sha1 } from '../support/files.js';
import { removeObjects } from '../support/rgw.js';
import { createTusUpload, tusPatch } from '../support/tus.js';
import { MiB, complete, putChunks } from '../support/uploads.js';
import { archiveKeyOf, contentOf, downloadSha1, fileExists, filesHolding, runGc, sleep, uploadLarge } from '../support/workers.js';

/**
 * gc's sweep of local files a kill -9 leaves behind (no row and no live upload needs them): removed once
 * untouched for GC_ORPHAN_GRACE_SECONDS, never a younger file, a file a row points at, or a live upload's.
 * The leftovers are made the way a kill leaves them: the real adopt and staging code stopped before the
 * row, or files of the names the upload paths write.
 */
const profiles = await availableProfiles('gc orphan sweep');
const GRACE_SECONDS = 2;

/** One leftover of each kind a kill leaves under DATA_DIR; returns their paths. */
async function leaveOrphans(app: RunningApp): Promise<Record<string, string>> {
  const tmp = path.join(app.dataDir, 'tmp');
  const tus = path.join(app.dataDir, 'tus');
  await fsp.mkdir(tmp, { recursive: true });
  await fsp.mkdir(tus, { recursive: true });
  // a form upload, or a tus PATCH with Upload-Checksum being staged, killed mid-body
  const formBody = path.join(tmp, randomUUID());
  await fsp.writeFile(formBody, randomBytes(64 * 1024));
  // a tus finish killed between its hard link and the blob's adoption
  const tusLink = path.join(tmp, `tus-${randomBytes(16).toString('hex')}`);
  await fsp.writeFile(tusLink, randomBytes(32 * 1024));
  // a blob adopted just before a kill, before its row was inserted
  const adopted = path.join(tmp, randomUUID());
  const content = randomBytes(48 * 1024);
  await fsp.writeFile(adopted, content);
  const blob = app.services.local.pathOf(await app.services.local.adopt(adopted, sha1(content)));
  // a kill inside leaveEmptyPlaceholder
  const placeholder = path.join(tus, `${randomBytes(16).toString('hex')}.placeholder`);
  await fsp.writeFile(placeholder, '');
  await fsp.truncate(placeholder, 10 * MiB);
  // a chunked upload create killed between staging its file and inserting the session
  const staging = new UploadStaging(app.dataDir);
  const sessionless = randomUUID();
  await staging.ensure(sessionless, 5 * MiB);
  return { formBody, tusLink, blob, placeholder, part: staging.pathOf(sessionless) };
}

async function presence(files: Record<string, string>): Promise<Record<string, boolean>> {
  return Object.fromEntries(await Promise.all(Object.entries(files).map(async ([kind, file]) => [kind, await fileExists(file)])));
}

describe.each(profiles)('gc sweeps local orphans (%s profile)', (profile) => {
  const app = useApp(profile, { GC_ORPHAN_GRACE_SECONDS: String(GRACE_SECONDS) });

  it('removes each kind of orphan untouched past the grace, keeps younger ones and every file a row or a live upload needs', { timeout: 120_000 }, async () => {
    const alice = await newUser(app);
    const stored = randomBytes(300 * 1024);
    const storedAnswer = await alice.upload('/api/files', { name: 'stored.bin', bytes: stored });
    expect(storedAnswer.status).toBe(201);
    const storedBlob = app.services.local.pathOf((await contentOf(app, storedAnswer.json.id)).location);
    const chunked = randomBytes(3 * MiB);
    const session = (await alice.post('/api/uploads', { name: 'chunked.bin', size: chunked.length, chunkSize: MiB })).json.uploadId as string;
    await putChunks(alice, session, chunked, MiB, [0]);
    const viaTus = randomBytes(2 * MiB);
    const tusUrl = await createTusUpload(app.baseUrl, alice, viaTus.length, { filename: 'tus.bin' });
    expect((await tusPatch(alice, tusUrl, 0, viaTus.subarray(0, MiB))).status).toBe(204);
    const tusFile = path.join(app.dataDir, 'tus', path.basename(new URL(tusUrl).pathname));
    const old = await leaveOrphans(app);
    const trickled = randomBytes(40 * MiB);
    // 1 MiB every 100 ms: still being written while gc runs
    const live = uploadLarge(alice, 'trickled.bin', trickled, { pieceBytes: MiB, pauseMs: 100 });
    // awaited below; a failure before then must not leave its rejection unhandled when the app closes
    live.catch(() => undefined);

    await sleep(GRACE_SECONDS * 1000 + 500);
    const young = await leaveOrphans(app);
    const orphanNames = new Set([...Object.values(old), ...Object.values(young)].map((file) => path.basename(file)));
    const liveTemps = (await fsp.readdir(path.join(app.dataDir, 'tmp'))).filter((name) => !orphanNames.has(name));
    // the trickled body, begun before the grace, written to ever since
    expect(liveTemps).toHaveLength(1);
    await runGc(app);

    expect(await presence(old)).toEqual({ formBody: false, tusLink: false, blob: false, placeholder: false, part: false });
    expect(await presence(young)).toEqual({ formBody: true, tusLink: true, blob: true, placeholder: true, part: true });
    // as old as the orphans, but a row or a live session points at each
    expect(await presence({ storedBlob, part: new UploadStaging(app.dataDir).pathOf(session), tusFile, tusInfo: `${tusFile}.json` }))
      .toEqual({ storedBlob: true, part: true, tusFile: true, tusInfo: true });
    expect(await fileExists(path.join(app.dataDir, 'tmp', liveTemps[0]!))).toBe(true);
    // each upload that was under way goes on to the end, with its exact bytes
    expect(await downloadSha1(alice, storedAnswer.json.id)).toEqual({ status: 200, sha1: sha1(stored), size: stored.length });
    await putChunks(alice, session, chunked, MiB, [1, 2]);
    const completed = await complete(alice, session);
    expect(completed.status).toBe(201);
    expect(await downloadSha1(alice, completed.json.id)).toEqual({ status: 200, sha1: sha1(chunked), size: chunked.length });
    const finished = await tusPatch(alice, tusUrl, MiB, viaTus.subarray(MiB));
    expect(finished.status).toBe(204);
    expect(await downloadSha1(alice, finished.headers.get('filestore-file-id')!)).toEqual({ status: 200, sha1: sha1(viaTus), size: viaTus.length });
    const trickledAnswer = await live;
    expect(trickledAnswer.status).toBe(201);
    expect(await downloadSha1(alice, trickledAnswer.json.id)).toEqual({ status: 200, sha1: sha1(trickled), size: trickled.length });

    await sleep(GRACE_SECONDS * 1000 + 500);
    await runGc(app);
    expect(await presence(young)).toEqual({ formBody: false, tusLink: false, blob: false, placeholder: false, part: false });
    // what is left under blobs/ is exactly what the rows point at
    const locations = await app.services.db.primary('files').where({ tier: 'local' }).pluck('location');
    expect((await blobFiles(app)).sort()).toEqual(locations.sort());
    expect(await fsp.readdir(path.join(app.dataDir, 'tmp'))).toEqual([]);
  });
});

const cluster = profiles.includes('cluster');

describe.runIf(cluster)('a transfer killed between the switch to S3 and the local delete (cluster profile)', () => {
  const app = useApp('cluster', { GC_ORPHAN_GRACE_SECONDS: String(GRACE_SECONDS) });

  it('leaves no copy of the bytes under DATA_DIR once the retry and gc have run, and the file is served from S3', { timeout: 120_000 }, async () => {
    const alice = await newUser(app);
    const bytes = randomBytes(3 * MiB + 11);
    const answer = await alice.upload('/api/files', { name: 'moved.bin', bytes });
    expect(answer.status).toBe(201);
    const landed = await contentOf(app, answer.json.id);
    try {
      // the local file as it was when the row switched: a kill then leaves it in place of the delete
      const localFile = app.services.local.pathOf(landed.location);
      const kept = path.join(app.dataDir, 'kept-by-the-kill');
      await fsp.link(localFile, kept);
      const { transfer } = buildProcessors(app.services);
      await transfer({ fileId: landed.id });
      await fsp.link(kept, localFile);
      await fsp.rm(kept);
      expect(await contentOf(app, answer.json.id)).toMatchObject({ tier: 's3', location: archiveKeyOf(landed) });

      // the job's retry after the kill, then gc before and after the grace
      await transfer({ fileId: landed.id });
      await runGc(app);
      expect(await fileExists(localFile)).toBe(true);
      await sleep(GRACE_SECONDS * 1000 + 500);
      await runGc(app);
      expect(await fileExists(localFile)).toBe(false);
      const probe = bytes.subarray(bytes.length >> 1, (bytes.length >> 1) + 4096);
      expect(await filesHolding(app.dataDir, probe)).toEqual([]);
      expect(await contentOf(app, answer.json.id)).toMatchObject({ tier: 's3', status: 'available' });
      expect(await downloadSha1(alice, answer.json.id)).toEqual({ status: 200, sha1: sha1(bytes), size: bytes.length });
    } finally {
      await removeObjects(`blobs/${landed.sha1}/`);
    }
  });
});
