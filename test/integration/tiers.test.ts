import { randomBytes } from 'node:crypto';
import http from 'node:http';
import path from 'node:path';
import { Upload } from 'tus-js-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CreateMultipartUploadCommand, UploadPartCommand } from '@aws-sdk/client-s3';
import { buildProcessors } from '../../workers/processors/index.js';
import { runJobs } from '../../workers/schedules.js';
import { startApp, type RunningApp } from '../support/app.js';
import { ApiClient } from '../support/client.js';
import { blobFiles, expectErrorBody, newUser, plainGet, sha1 } from '../support/files.js';
import { multipartUploads, removeObjects, s3 } from '../support/rgw.js';
import { SERVICE_DEFAULTS, servicesAvailable } from '../support/services.js';
import { MiB, proofFor, type Challenge } from '../support/uploads.js';
import { abandonDownload, archiveKeyOf, contentOf, filesHolding, openFilesUnder, sample, sleep, waitFor, waitForTier } from '../support/workers.js';

const cluster = await servicesAvailable('storage tiers (cluster profile)', ['mariadb-pair', 'redis', 'ceph-rgw']);

type User = Awaited<ReturnType<typeof newUser>>;
const PUBLIC_ENDPOINT = 'http://127.0.0.1:7480';

/** The headers a download promises; they must not change when the bytes move to another tier. */
const CONTENT_HEADERS = ['content-type', 'content-length', 'content-range', 'etag', 'last-modified', 'accept-ranges', 'content-disposition', 'cache-control'];

/** A tus-js-client upload; resolves with the upload's URL. */
function tusUpload(app: RunningApp, user: User, bytes: Buffer, metadata: Record<string, string>): Promise<string> {
  return new Promise((resolve, reject) => {
    const upload = new Upload(bytes, {
      endpoint: `${app.baseUrl}/api/tus`,
      headers: { authorization: `Bearer ${user.token}` },
      chunkSize: MiB,
      retryDelays: null,
      metadata,
      onSuccess: () => resolve(upload.url!),
      onError: reject,
    });
    upload.start();
  });
}

async function uploadFile(user: User, name: string, bytes: Buffer, folder = '/') {
  const answer = await user.upload('/api/files', { name, bytes }, { folder });
  if (answer.status !== 201) throw new Error(`upload ${name}: ${answer.status} ${answer.text}`);
  return answer.json as { id: string; sha1: string };
}

/** A distinctive 4 KiB from the middle of random content: finding it in a file means a copy. */
const probeOf = (bytes: Buffer) => bytes.subarray(bytes.length >> 1, (bytes.length >> 1) + 4096);

describe.runIf(cluster)('storage tiers: content lands locally and moves to Ceph S3 (cluster profile)', () => {
  let app: RunningApp;
  let admin: User;
  let alice: User;
  let bob: User;
  const adminName = `ops-${randomBytes(3).toString('hex')}`;
  const sha1s: string[] = [];
  const pdf = { bytes: randomBytes(2 * MiB + 333), id: '' };
  const viaTus = { bytes: randomBytes(3 * MiB + 77), id: '', url: '' };
  /** The answers of a set of downloads while the content was still local, keyed by request name. */
  const before = new Map<string, { status: number; headers: http.IncomingHttpHeaders; bytes: Buffer }>();
  let jobs: Promise<void> | undefined;

  const requests = (id: string, size: number, lastModified: string): Record<string, Record<string, string>> => ({
    whole: {},
    head: {},
    range: { range: 'bytes=100-1123' },
    suffix: { range: 'bytes=-500' },
    open: { range: `bytes=${size - 10}-` },
    oneByte: { range: 'bytes=0-0' },
    unsatisfiable: { range: `bytes=${size}-` },
    etagMatch: { 'if-none-match': `"${sha1(pdf.bytes)}"` },
    etagOther: { 'if-none-match': `"${'0'.repeat(40)}"` },
    notModified: { 'if-modified-since': lastModified },
    redirect: {},
  });
  const send = (user: User, id: string, name: string, headers: Record<string, string>) =>
    raw(name === 'head' ? 'HEAD' : 'GET', `/api/files/${id}/content${name === 'redirect' ? '?redirect=1' : ''}`, { authorization: `Bearer ${user.token}`, ...headers });
  /** A request through node:http with exactly these headers (see plainGet: fetch would add Cache-Control). */
  const raw = (method: string, urlPath: string, headers: Record<string, string>) =>
    new Promise<{ status: number; headers: http.IncomingHttpHeaders; bytes: Buffer }>((resolve, reject) => {
      const req = http.request(new URL(urlPath, app.baseUrl), { method, headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, bytes: Buffer.concat(chunks) }));
        res.on('error', reject);
      });
      req.on('error', reject).end();
    });

  /** Starts the queues in this process (once) and waits until both seeded files are in S3. */
  async function moved() {
    jobs ??= runJobs(app.services);
    await jobs;
    return Promise.all([waitForTier(app, pdf.id, 's3'), waitForTier(app, viaTus.id, 's3')]);
  }

  beforeAll(async () => {
    app = await startApp('cluster', { S3_PUBLIC_ENDPOINT: PUBLIC_ENDPOINT, ADMIN_USERS: adminName });
    admin = await newUser(app); // the first registered user is an admin
    alice = await newUser(app);
    bob = await newUser(app);
    pdf.id = (await uploadFile(alice, 'Bericht März.pdf', pdf.bytes, '/docs')).id;
    viaTus.url = await tusUpload(app, alice, viaTus.bytes, { filename: 'movie.mp4', folder: '/tus' });
    viaTus.id = (await alice.get('/api/files?folder=%2Ftus')).json.files[0].id;
    sha1s.push(sha1(pdf.bytes), sha1(viaTus.bytes));
    const lastModified = (await plainGet(app.baseUrl, `/api/files/${pdf.id}/content`, { authorization: `Bearer ${alice.token}` })).headers['last-modified']!;
    for (const [name, headers] of Object.entries(requests(pdf.id, pdf.bytes.length, lastModified))) before.set(name, await send(alice, pdf.id, name, headers));
  });

  afterAll(async () => {
    await app?.close();
    for (const hash of sha1s) await removeObjects(`blobs/${hash}/`).catch(() => undefined);
  });

  it('lands a completed upload (multipart and tus) on the local tier, and the transfer job moves it to S3 at blobs/<sha1>/<id>.<landing tag>', async () => {
    const landed = await Promise.all([contentOf(app, pdf.id), contentOf(app, viaTus.id)]);
    if (!jobs) {
      for (const row of landed) expect(row).toMatchObject({ tier: 'local', status: 'available' });
      // one copy of each content under DATA_DIR, and it is the local blob
      for (const [i, { bytes }] of [pdf, viaTus].entries()) {
        expect(await filesHolding(app.dataDir, probeOf(bytes))).toEqual([path.join('blobs', landed[i]!.location)]);
      }
    }
    const rows = await moved();
    for (const [i, row] of rows.entries()) {
      expect(row).toMatchObject({ tier: 's3', status: 'available', sha1: sha1s[i], location: archiveKeyOf(landed[i]!) });
    }
  });

  it('keeps no copy of moved content under DATA_DIR: no local blob file, nothing in tus or upload staging', async () => {
    await moved();
    // the local file goes right after the row switches to S3
    await waitFor('the local blobs to go', async () => (await blobFiles(app)).length === 0, 10_000);
    for (const { bytes } of [pdf, viaTus]) expect(await filesHolding(app.dataDir, probeOf(bytes))).toEqual([]);
    expect(await filesHolding(path.join(app.dataDir, 'tus'), viaTus.bytes.subarray(0, 4096))).toEqual([]);
    // the finished tus upload still answers HEAD with its full offset, from a placeholder holding no bytes
    const head = await fetch(viaTus.url, { method: 'HEAD', headers: { 'tus-resumable': '1.0.0', authorization: `Bearer ${alice.token}` } });
    expect(head.status).toBe(200);
    expect(head.headers.get('upload-offset')).toBe(String(viaTus.bytes.length));
  });

  it('serves content from S3 with the same statuses, headers and bytes as from the local tier (200, 206, 304, 416, HEAD)', async () => {
    await moved();
    const lastModified = before.get('whole')!.headers['last-modified']!;
    for (const [name, headers] of Object.entries(requests(pdf.id, pdf.bytes.length, lastModified))) {
      if (name === 'redirect') continue;
      const was = before.get(name)!;
      const now = await send(alice, pdf.id, name, headers);
      const pick = (h: Record<string, unknown>) => Object.fromEntries(CONTENT_HEADERS.map((key) => [key, h[key]]));
      expect({ name, status: now.status, headers: pick(now.headers) }).toEqual({ name, status: was.status, headers: pick(was.headers) });
      expect({ name, same: now.bytes.equals(was.bytes) }).toEqual({ name, same: true });
    }
    expect(before.get('whole')).toMatchObject({ status: 200, headers: { 'content-type': 'application/pdf', etag: `"${sha1s[0]}"` } });
    expect(before.get('whole')!.bytes.equals(pdf.bytes)).toBe(true);
    expect(before.get('range')).toMatchObject({ status: 206, headers: { 'content-range': `bytes 100-1123/${pdf.bytes.length}` } });
    expect(before.get('range')!.bytes.equals(pdf.bytes.subarray(100, 1124))).toBe(true);
    expect(before.get('unsatisfiable')).toMatchObject({ status: 416, headers: { 'content-range': `bytes */${pdf.bytes.length}` } });
    expect(before.get('etagMatch')!.status).toBe(304);
    expect(before.get('notModified')!.status).toBe(304);
    expect(before.get('etagOther')!.status).toBe(200);
    // a local file is never redirected: ?redirect=1 streamed it
    expect(before.get('redirect')!.status).toBe(200);
    expect(before.get('redirect')!.bytes.equals(pdf.bytes)).toBe(true);
  });

  it('redirects ?redirect=1 to a presigned S3 URL (302) whose bytes and Content-Disposition are the file\'s', async () => {
    await moved();
    const answer = await send(alice, pdf.id, 'redirect', {});
    expect(answer.status).toBe(302);
    const location = answer.headers.location!;
    expect(location.startsWith(`${PUBLIC_ENDPOINT}/filestore/blobs/${sha1s[0]}/`)).toBe(true);
    expect(location).toMatch(/X-Amz-Signature=[0-9a-f]{64}/);
    expect(location).toMatch(/X-Amz-Expires=(\d+)/);
    expect(Number(/X-Amz-Expires=(\d+)/.exec(location)![1])).toBeLessThanOrEqual(900);
    const fetched = await fetch(location);
    expect(fetched.status).toBe(200);
    expect(Buffer.from(await fetched.arrayBuffer()).equals(pdf.bytes)).toBe(true);
    expect(fetched.headers.get('content-disposition')).toBe(before.get('whole')!.headers['content-disposition']);
  });

  it('answers 404 to another user\'s file id, with or without ?redirect=1, and never reveals a URL', async () => {
    await moved();
    for (const query of ['', '?redirect=1']) {
      const answer = await bob.get(`/api/files/${pdf.id}/content${query}`);
      expect(answer.status).toBe(404);
      expect(expectErrorBody(answer.json).code).toBe('not_found');
      expect(answer.headers.get('location')).toBeNull();
    }
  });

  it('ignores ?redirect=1 (200 with the bytes) when no S3_PUBLIC_ENDPOINT is configured', async () => {
    const plain = await startApp('cluster', {}, { jobs: true });
    try {
      const carol = await newUser(plain);
      const bytes = randomBytes(MiB + 5);
      sha1s.push(sha1(bytes));
      const { id } = await uploadFile(carol, 'plain.bin', bytes);
      await waitForTier(plain, id, 's3');
      const answer = await plainGet(plain.baseUrl, `/api/files/${id}/content?redirect=1`, { authorization: `Bearer ${carol.token}` });
      expect(answer.status).toBe(200);
      expect(answer.headers.location).toBeUndefined();
      expect(answer.bytes.equals(bytes)).toBe(true);
    } finally {
      await plain.close();
    }
  });

  it('links content held only in S3 by proof of possession (challenge ranges read from S3), and refuses a forged proof', async () => {
    await moved();
    const hash = sha1s[1]!;
    const ask = (name: string) => bob.post('/api/uploads', { name, folder: '/mine', size: viaTus.bytes.length, sha1: hash });
    const asked = await ask('claimed.mp4');
    expect(asked.status).toBe(200);
    expect(asked.json.mode).toBe('proof');
    const proven = await bob.post(`/api/uploads/${asked.json.uploadId}/proof`, { proof: proofFor(asked.json.challenge as Challenge, viaTus.bytes) });
    expect(proven.status).toBe(201);
    expect(proven.json).toMatchObject({ name: 'claimed.mp4', sha1: hash, size: viaTus.bytes.length });
    expect((await bob.get(`/api/files/${proven.json.id}/content`)).bytes.equals(viaTus.bytes)).toBe(true);
    expect(await contentOf(app, proven.json.id)).toEqual({ ...(await contentOf(app, viaTus.id)), tier: 's3' });

    const forged = await ask('forged.mp4');
    expect(forged.json.mode).toBe('proof');
    const refused = await bob.post(`/api/uploads/${forged.json.uploadId}/proof`, { proof: '0'.repeat(64) });
    expect(refused.status).toBe(403);
    expect(expectErrorBody(refused.json).code).toBe('proof_rejected');
    expect(await blobFiles(app)).toEqual([]);
  });

  it('GET /api/admin/jobs answers the first user and ADMIN_USERS with queue counts and failed jobs, others 403 forbidden', async () => {
    await moved();
    const named = new ApiClient(app.baseUrl);
    await named.signUp(adminName);
    const counts = { waiting: expect.any(Number), active: expect.any(Number), failed: expect.any(Number) };
    for (const client of [admin, named]) {
      const answer = await client.get('/api/admin/jobs');
      expect(answer.status).toBe(200);
      expect(answer.json).toEqual({ queues: { transfer: counts, verify: counts, gc: counts }, failed: expect.any(Array) });
      expect(answer.json.queues.transfer.failed).toBe(0);
    }
    for (const client of [alice, bob]) {
      const answer = await client.get('/api/admin/jobs');
      expect(answer.status).toBe(403);
      expect(expectErrorBody(answer.json).code).toBe('forbidden');
    }
    expect((await new ApiClient(app.baseUrl).get('/api/admin/jobs')).status).toBe(401);
  });

  it('GET /metrics exposes filestore_queue_jobs per queue and state, and declares filestore_job_duration_seconds', async () => {
    await moved();
    const text = (await new ApiClient(app.baseUrl).get('/metrics')).text;
    for (const queue of ['transfer', 'verify', 'gc']) {
      for (const state of ['waiting', 'active', 'failed']) expect({ queue, state, value: sample(text, 'filestore_queue_jobs', { queue, state }) }).toEqual({ queue, state, value: expect.any(Number) });
    }
    expect(text).toContain('# TYPE filestore_job_duration_seconds histogram');
  });

  it('keeps streaming from S3 to a client that stops reading for longer than the S3 idle timeout', { timeout: 60_000 }, async () => {
    await moved();
    const bytes = randomBytes(24 * MiB);
    sha1s.push(sha1(bytes));
    const { id } = await uploadFile(alice, 'paused.bin', bytes);
    await waitForTier(app, id, 's3');
    const received = await new Promise<Buffer>((resolve, reject) => {
      http.get(`${app.baseUrl}/api/files/${id}/content`, { headers: { authorization: `Bearer ${alice.token}` }, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.once('data', () => (res.pause(), setTimeout(() => res.resume(), 6000)));
        res.on('end', () => resolve(Buffer.concat(chunks))).on('aborted', () => reject(new Error(`cut off after ${Buffer.concat(chunks).length} bytes`)));
      }).on('error', reject);
    });
    expect(received.length).toBe(bytes.length);
    expect(received.equals(bytes)).toBe(true);
  });

  it('frees the S3 connection or blob file of a download the client abandons: later downloads still answer', { timeout: 120_000 }, async () => {
    await moved();
    const bytes = randomBytes(16 * MiB);
    sha1s.push(sha1(bytes));
    const { id } = await uploadFile(alice, 'abandoned.bin', bytes);
    await waitForTier(app, id, 's3');
    // more than the S3 client's 50 pooled sockets
    for (let i = 0; i < 60; i++) await abandonDownload(alice, id);
    const after = await fetch(`${app.baseUrl}/api/files/${id}/content`, { headers: { authorization: `Bearer ${alice.token}` }, signal: AbortSignal.timeout(15_000) });
    expect(after.status).toBe(200);
    expect(Buffer.from(await after.arrayBuffer()).equals(bytes)).toBe(true);

    const local = await startApp('embedded');
    try {
      const carol = await newUser(local);
      const { id: localId } = await uploadFile(carol, 'abandoned.bin', bytes);
      for (let i = 0; i < 20; i++) await abandonDownload(carol, localId);
      await waitFor('every blob file to be closed', async () => (await openFilesUnder(path.join(local.dataDir, 'blobs'))) === 0, 5000);
    } finally {
      await local.close();
    }
  });

  it('moves a newly landed upload without help once the queues run, and downloads stay byte-equal', async () => {
    await moved();
    const bytes = randomBytes(5 * MiB + 1);
    sha1s.push(sha1(bytes));
    const { id } = await uploadFile(alice, 'later.bin', bytes);
    const row = await waitForTier(app, id, 's3');
    expect(row.location).toMatch(new RegExp(`^blobs/${sha1(bytes)}/${row.id}\\.[0-9a-f]{12}$`));
    await waitFor('the local blob to go', async () => (await blobFiles(app)).length === 0);
    expect((await alice.get(`/api/files/${id}/content`)).bytes.equals(bytes)).toBe(true);
  });
});

describe.runIf(cluster)('collection of multipart uploads a killed worker left in S3 (cluster profile)', () => {
  let app: RunningApp;
  const prefix = `blobs/${'ab'.repeat(20)}-${randomBytes(4).toString('hex')}/`;
  beforeAll(async () => {
    // 5 s: the younger upload must stay under the limit however slowly a loaded CI machine begins it
    app = await startApp('cluster', { S3_ABANDONED_UPLOAD_SECONDS: '5' });
  });
  afterAll(async () => {
    await app?.close();
    await removeObjects(prefix);
  });

  it('aborts multipart uploads begun longer ago than S3_ABANDONED_UPLOAD_SECONDS and leaves younger ones going', { timeout: 60_000 }, async () => {
    const client = s3();
    const begin = async (key: string) => {
      const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket: SERVICE_DEFAULTS.S3_BUCKET, Key: key }));
      await client.send(new UploadPartCommand({ Bucket: SERVICE_DEFAULTS.S3_BUCKET, Key: key, UploadId, PartNumber: 1, Body: randomBytes(MiB) }));
      return UploadId!;
    };
    try {
      const abandoned = await begin(`${prefix}1`);
      await sleep(6500);
      const young = await begin(`${prefix}2`);
      await buildProcessors(app.services).gc({});
      expect(await multipartUploads(prefix)).toEqual([{ key: `${prefix}2`, uploadId: young }]);
      expect(abandoned).not.toBe(young);
    } finally {
      client.destroy();
    }
  });
});
