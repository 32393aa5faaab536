import { createHash, randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildProcessors } from '../../workers/processors/index.js';
import { availableProfiles, useApp, startApp, type RunningApp } from '../support/app.js';
import { blobFiles, filesUnder, newUser, sha1 } from '../support/files.js';
import { putObject, removeObjects } from '../support/rgw.js';
import { MiB, complete, proofFor, putChunks, uploadChunked, type Challenge } from '../support/uploads.js';
import { archiveKeyOf, contentOf, sleep, waitFor, waitForTier } from '../support/workers.js';

/**
 * Collection, verification and expiry against the stored bytes: gc racing a link of the same content,
 * bytes corrupted on their tier, upload sessions past their TTL. Both profiles; in the cluster profile
 * part of the content is in S3 (Ceph RGW).
 */
const profiles = await availableProfiles('tier integrity');
type User = Awaited<ReturnType<typeof newUser>>;

async function uploadFile(user: User, name: string, bytes: Buffer): Promise<string> {
  const answer = await user.upload('/api/files', { name, bytes });
  if (answer.status !== 201) throw new Error(`upload ${name}: ${answer.status} ${answer.text}`);
  return answer.json.id as string;
}

/** Every available user_files row points at an available blob whose bytes hash to its sha1. */
async function expectEveryLinkReadable(app: RunningApp): Promise<number> {
  const rows = await app.services.db.primary('user_files as uf').join('files as f', 'f.id', 'uf.file_id').where('uf.status', 'available').select('uf.id', 'f.sha1', 'f.tier', 'f.location', 'f.status');
  const dangling = await app.services.db.primary('user_files as uf').leftJoin('files as f', 'f.id', 'uf.file_id').whereNull('f.id').where('uf.status', 'available').count({ n: '*' });
  expect(Number(dangling[0]!.n)).toBe(0);
  for (const row of rows) {
    const hash = createHash('sha1');
    for await (const piece of await app.services.content.read(row)) hash.update(piece as Buffer);
    expect({ id: row.id, status: row.status, sha1: hash.digest('hex') }).toEqual({ id: row.id, status: 'available', sha1: row.sha1 });
  }
  return rows.length;
}

describe.each(profiles)('collection racing a link of the same content (%s profile)', (profile) => {
  let app: RunningApp;
  const hashes: string[] = [];
  beforeAll(async () => {
    app = await startApp(profile, { GC_GRACE_SECONDS: '1' });
  });
  afterAll(async () => {
    await app?.close();
    if (profile === 'cluster') for (const hash of hashes) await removeObjects(`blobs/${hash}/`).catch(() => undefined);
  });

  it('links (keeping the blob) or refuses cleanly, never leaving a link to a collected blob, over 30 rounds of gc against a proof or an upload', { timeout: 300_000 }, async () => {
    const { gc, transfer } = buildProcessors(app.services);
    const alice = await newUser(app);
    const bob = await newUser(app);
    const outcomes: Record<string, number> = {};
    const count = (key: string) => (outcomes[key] = (outcomes[key] ?? 0) + 1);
    for (let round = 0; round < 30; round++) {
      const bytes = randomBytes(MiB + round);
      const hash = sha1(bytes);
      hashes.push(hash);
      const id = await uploadFile(alice, `r${round}.bin`, bytes);
      const stored = await contentOf(app, id);
      // in the cluster profile every other pair of rounds races against content in S3
      const inS3 = profile === 'cluster' && Math.floor(round / 2) % 2 === 1;
      if (inS3) await transfer({ fileId: stored.id });
      expect((await alice.request('DELETE', `/api/files/${id}`)).status).toBe(204);
      await sleep(1100); // GC_GRACE_SECONDS=1
      const viaProof = round % 2 === 0;
      const asked = viaProof ? await bob.post('/api/uploads', { name: `r${round}.bin`, size: bytes.length, sha1: hash }) : undefined;
      if (viaProof) expect(asked!.json.mode).toBe('proof');

      const link = viaProof
        ? bob.post(`/api/uploads/${asked!.json.uploadId}/proof`, { proof: proofFor(asked!.json.challenge as Challenge, bytes) })
        : bob.upload('/api/files', { name: `r${round}.bin`, bytes });
      const [linked] = await Promise.all([link, sleep(round % 5 * 3).then(() => gc({}))]);
      let fileId: string;
      if (linked.status === 201) {
        fileId = linked.json.id;
      } else {
        // refused cleanly: 403 proof_rejected, and the session takes the bytes instead
        expect({ round, status: linked.status, code: linked.json?.error?.code, mode: linked.json?.error?.mode }).toEqual({ round, status: 403, code: 'proof_rejected', mode: 'chunks' });
        const { chunkSize, chunkCount } = linked.json.error as { chunkSize: number; chunkCount: number };
        await putChunks(bob, asked!.json.uploadId, bytes, chunkSize, [...Array(chunkCount).keys()]);
        const completed = await complete(bob, asked!.json.uploadId);
        expect(completed.status).toBe(201);
        fileId = completed.json.id;
      }
      const now = await contentOf(app, fileId);
      count(`${viaProof ? 'proof' : 'upload'} ${linked.status === 201 ? 'linked' : 'refused'}, blob ${now.id === stored.id && now.location === (inS3 ? archiveKeyOf(stored) : stored.location) ? 'kept' : 'stored again'}`);
      expect(now).toMatchObject({ status: 'available', sha1: hash });
      expect((await bob.get(`/api/files/${fileId}/content`)).bytes.equals(bytes)).toBe(true);
    }
    console.info(`gc vs link (${profile}):`, outcomes);
    // a later collection finds nothing to take: every blob is referenced
    await gc({});
    expect(await expectEveryLinkReadable(app)).toBe(30);
    expect(await app.services.db.primary('files').whereNot('status', 'available').count({ n: '*' }).then((rows) => Number(rows[0]!.n))).toBe(0);
  });
});

describe.each(profiles)('verification of stored bytes (%s profile)', (profile) => {
  let app: RunningApp;
  let admin: User;
  const hashes: string[] = [];
  beforeAll(async () => {
    app = await startApp(profile, profile === 'cluster' ? { S3_PUBLIC_ENDPOINT: 'http://127.0.0.1:7480' } : {}, { jobs: true });
    admin = await newUser(app); // the first user is an admin
  });
  afterAll(async () => {
    await app?.close();
    if (profile === 'cluster') for (const hash of hashes) await removeObjects(`blobs/${hash}/`).catch(() => undefined);
  });

  const tierName = profile === 'cluster' ? 'S3 object' : 'local blob file';
  it(`marks a ${tierName} whose bytes changed corrupt: 409 on download, no proof offered, and uploading the good bytes heals it`, { timeout: 120_000 }, async () => {
    const alice = await newUser(app);
    const bob = await newUser(app);
    const bytes = randomBytes(2 * MiB + 11);
    const hash = sha1(bytes);
    hashes.push(hash);
    const id = await uploadFile(alice, 'precious.bin', bytes);
    const damaged = Buffer.from(bytes);
    for (const offset of [0, 1 << 20, damaged.length - 1]) damaged[offset]! ^= 0xff;
    const row = profile === 'cluster' ? await waitForTier(app, id, 's3') : await contentOf(app, id);
    if (profile === 'cluster') await putObject(row.location, damaged);
    else await fsp.writeFile(path.join(app.dataDir, 'blobs', row.location), damaged);

    expect((await alice.post(`/api/admin/files/${id}/verify`)).status).toBe(403);
    expect((await admin.post(`/api/admin/files/${'0'.repeat(8)}-0000-4000-8000-${'0'.repeat(12)}/verify`)).status).toBe(404);
    const queued = await admin.post(`/api/admin/files/${id}/verify`);
    expect(queued.status).toBe(202);
    expect(queued.json).toEqual({ fileId: row.id, queued: true });
    await waitFor('the verify job to mark the content corrupt', async () => (await contentOf(app, id)).status === 'corrupt', 30_000);

    for (const query of ['', '?redirect=1']) {
      for (const headers of [{}, { range: 'bytes=0-99' }] as Array<Record<string, string>>) {
        const answer = await alice.get(`/api/files/${id}/content${query}`, headers);
        expect({ query, headers, status: answer.status, code: answer.json?.error?.code }).toEqual({ query, headers, status: 409, code: 'corrupt' });
      }
    }
    const asked = await bob.post('/api/uploads', { name: 'mine.bin', size: bytes.length, sha1: hash });
    expect(asked.status).toBe(201);
    expect(asked.json.mode).toBe('chunks');

    await putChunks(bob, asked.json.uploadId, bytes, asked.json.chunkSize, [...Array(asked.json.chunkCount).keys()]);
    const healed = await complete(bob, asked.json.uploadId);
    expect(healed.status).toBe(201);
    expect(healed.json.sha1).toBe(hash);
    const after = profile === 'cluster' ? await waitForTier(app, id, 's3') : await contentOf(app, id);
    expect(after).toMatchObject({ id: row.id, status: 'available' });
    for (const [user, fileId] of [[alice, id], [bob, healed.json.id]] as const) {
      expect((await user.get(`/api/files/${fileId}/content`)).bytes.equals(bytes)).toBe(true);
    }
    if (profile === 'embedded') expect((await blobFiles(app)).filter((file) => file.includes(hash))).toEqual([after.location]);

    // verified again, the healed bytes stay available
    const healedCheck = Number((await contentOf(app, id)).verified_at);
    await sleep(5);
    const again = await admin.post(`/api/admin/files/${id}/verify`);
    expect(again.status).toBe(202);
    await waitFor('the verify job to record its check', async () => {
      const checked = await contentOf(app, id);
      return Number(checked.verified_at) > healedCheck && checked.status === 'available';
    }, 30_000);
  });

  it('sweeps only blobs whose last check is older than VERIFY_INTERVAL_SECONDS: fresh uploads count as checked', { timeout: 60_000 }, async () => {
    const { verify } = buildProcessors(app.services);
    const alice = await newUser(app);
    const stale = await uploadFile(alice, 'stale.bin', randomBytes(300 * 1024));
    const fresh = await uploadFile(alice, 'fresh.bin', randomBytes(300 * 1024));
    if (profile === 'cluster') for (const id of [stale, fresh]) hashes.push((await waitForTier(app, id, 's3')).sha1);
    const staleRow = await contentOf(app, stale);
    const freshRow = await contentOf(app, fresh);
    expect(Number(freshRow.verified_at)).toBeGreaterThan(Date.now() - 60_000);
    const lastCheck = Date.now() - (app.services.config.VERIFY_INTERVAL_SECONDS + 60) * 1000;
    await app.services.db.primary('files').where({ id: staleRow.id }).update({ verified_at: lastCheck });

    await verify({ sweep: true });
    await waitFor('the sweep to re-verify the stale blob', async () => Number((await contentOf(app, stale)).verified_at) > lastCheck, 30_000);
    expect(Number((await contentOf(app, fresh)).verified_at)).toBe(Number(freshRow.verified_at));
  });
});

describe.each(profiles)('collection of expired upload sessions (%s profile)', (profile) => {
  const app = useApp(profile, { UPLOAD_TTL_SECONDS: '3' });

  it('removes chunked and tus sessions past UPLOAD_TTL_SECONDS with their staged bytes, and leaves stored files alone', async () => {
    const { gc } = buildProcessors(app.services);
    const alice = await newUser(app);
    const tusHeaders = { 'tus-resumable': '1.0.0', authorization: `Bearer ${alice.token}` };
    const partial = randomBytes(3 * MiB);
    const finished = randomBytes(300 * 1024);
    // all of it within the 3 s the sessions live (1 s was too short for a loaded CI machine)
    const [open, done, tusPartial, tusDone] = await Promise.all([
      (async () => {
        const created = await alice.post('/api/uploads', { name: 'partial.bin', size: partial.length, chunkSize: MiB });
        await putChunks(alice, created.json.uploadId, partial, MiB, [0, 2]);
        return created.json.uploadId as string;
      })(),
      uploadChunked(alice, finished, { name: 'done.bin' }),
      (async () => {
        const created = await fetch(`${app.baseUrl}/api/tus`, { method: 'POST', headers: { ...tusHeaders, 'upload-length': String(partial.length), 'upload-metadata': `filename ${Buffer.from('t.bin').toString('base64')}` } });
        const url = new URL(created.headers.get('location')!, app.baseUrl).toString();
        const patched = await fetch(url, { method: 'PATCH', headers: { ...tusHeaders, 'upload-offset': '0', 'content-type': 'application/offset+octet-stream' }, body: new Uint8Array(partial.subarray(0, MiB)) });
        expect(patched.status).toBe(204);
        return url;
      })(),
      (async () => {
        const created = await fetch(`${app.baseUrl}/api/tus`, { method: 'POST', headers: { ...tusHeaders, 'upload-length': String(finished.length), 'upload-metadata': `filename ${Buffer.from('tdone.bin').toString('base64')}` } });
        const url = new URL(created.headers.get('location')!, app.baseUrl).toString();
        const patched = await fetch(url, { method: 'PATCH', headers: { ...tusHeaders, 'upload-offset': '0', 'content-type': 'application/offset+octet-stream' }, body: new Uint8Array(finished) });
        expect(patched.status).toBe(204);
        return url;
      })(),
    ]);
    expect(done.completed.status).toBe(201);
    expect(await filesUnder(path.join(app.dataDir, 'uploads'))).toEqual([`${open}.part`]);
    expect((await filesUnder(path.join(app.dataDir, 'tus'))).length).toBeGreaterThanOrEqual(2);

    await sleep(3200);
    await gc({});
    expect(await app.services.db.primary('upload_sessions').count({ n: '*' }).then((rows) => Number(rows[0]!.n))).toBe(0);
    for (const uploadId of [open, done.uploadId]) expect((await alice.get(`/api/uploads/${uploadId}`)).status).toBe(404);
    expect(await filesUnder(path.join(app.dataDir, 'uploads'))).toEqual([]);
    for (const url of [tusPartial, tusDone]) expect([404, 410]).toContain((await fetch(url, { method: 'HEAD', headers: tusHeaders })).status);
    expect(await filesUnder(path.join(app.dataDir, 'tus'))).toEqual([]);

    // the files those sessions produced are not the sessions': they stay
    const listed = (await alice.get('/api/files')).json.files as Array<{ id: string; name: string }>;
    expect(listed.map((file) => file.name).sort()).toEqual(['done.bin', 'tdone.bin']);
    for (const file of listed) expect((await alice.get(`/api/files/${file.id}/content`)).bytes.equals(finished)).toBe(true);
  });
});
