import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { RedisChunkTracker } from '../../src/upload/chunk-tracker.redis.js';
import { availableProfiles, startApp, useApp, type RunningApp } from '../support/app.js';
import { ApiClient } from '../support/client.js';
import { newUser, sha1 } from '../support/files.js';
import { tusRequest } from '../support/tus.js';
import { MiB, chunkOf, complete, completeRacingCancel, putChunk, putChunks, shuffled } from '../support/uploads.js';

const profiles = await availableProfiles('two API processes');

type User = Awaited<ReturnType<typeof newUser>>;
const OCTETS = { 'tus-resumable': '1.0.0', 'content-type': 'application/offset+octet-stream' };

// Two API processes of one cluster: the same database, Redis keys and DATA_DIR (as on one machine).
describe.skipIf(!profiles.includes('cluster'))('uploads across two API processes (cluster profile)', () => {
  const nodeA = useApp('cluster');
  let nodeB: RunningApp;
  beforeAll(async () => {
    const { DATA_DIR, DB_PRIMARY_URL, DB_REPLICA_URL, REDIS_KEY_PREFIX } = nodeA.services.config;
    nodeB = await startApp('cluster', { DATA_DIR, DB_PRIMARY_URL: DB_PRIMARY_URL!, DB_REPLICA_URL: DB_REPLICA_URL!, REDIS_KEY_PREFIX });
  });
  afterAll(async () => {
    await nodeB?.close();
  });

  const on = (node: RunningApp, uploadPath: string) => `${node.baseUrl}${uploadPath}`;
  const tus = tusRequest;
  const offsetOn = async (user: User, url: string) => Number((await tus(user, 'HEAD', url)).headers.get('upload-offset'));
  /** Creates an upload on node A; returns its path, which either node serves. */
  const create = async (user: User, size: number, filename: string) => {
    const created = await tus(user, 'POST', `${nodeA.baseUrl}/api/tus`, {
      'upload-length': String(size),
      'upload-metadata': `filename ${Buffer.from(filename).toString('base64')}`,
    });
    expect(created.status).toBe(201);
    return new URL(created.headers.get('location')!, nodeA.baseUrl).pathname;
  };
  const downloaded = async (user: User, node: RunningApp, name: string) => {
    const files = (await user.get('/api/files?folder=/')).json.files as Array<{ id: string; name: string }>;
    const file = files.find((f) => f.name === name)!;
    return (await new ApiClient(node.baseUrl, user.token).get(`/api/files/${file.id}/content`)).bytes;
  };

  it('takes the chunks of one upload from both, in parallel and shuffled, and completes it on either with the exact bytes', async () => {
    const alice = await newUser(nodeA);
    const aliceOnB = new ApiClient(nodeB.baseUrl, alice.token);
    const chunkSize = MiB;
    const bytes = randomBytes(9 * chunkSize + 333);
    const created = await alice.post('/api/uploads', { name: 'chunks.bin', size: bytes.length, sha1: sha1(bytes), chunkSize });
    expect(created.status).toBe(201);
    const { uploadId, chunkCount } = created.json as { uploadId: string; chunkCount: number };
    const queue = shuffled([...Array(chunkCount).keys()]);
    const statuses: number[] = [];
    await Promise.all([alice, aliceOnB, alice, aliceOnB].map(async (client) => {
      for (let index = queue.shift(); index !== undefined; index = queue.shift()) {
        statuses.push((await putChunk(client, uploadId, index, chunkOf(bytes, chunkSize, index))).status);
      }
    }));
    expect(statuses).toEqual(Array(chunkCount).fill(204));
    expect((await alice.get(`/api/uploads/${uploadId}`)).json).toMatchObject({ received: chunkCount, missing: [] });

    const completed = await complete(aliceOnB, uploadId);
    expect(completed.status).toBe(201);
    expect(completed.json).toMatchObject({ sha1: sha1(bytes), size: bytes.length });
    const again = await complete(alice, uploadId);
    expect(again.status).toBe(200);
    expect(again.json.id).toBe(completed.json.id);
    expect((await downloaded(alice, nodeA, 'chunks.bin')).equals(bytes)).toBe(true);
  });

  it('verifies an upload on one process at a time: a complete on the other while the first verifies answers 202, and both end with the one file, never 500', async () => {
    const alice = await newUser(nodeA);
    const aliceOnB = new ApiClient(nodeB.baseUrl, alice.token);
    const chunkSize = 4 * MiB;
    const bytes = randomBytes(15 * chunkSize + 4321);
    const created = await alice.post('/api/uploads', { name: 'verified-once.bin', size: bytes.length, sha1: sha1(bytes), chunkSize });
    const id = created.json.uploadId as string;
    await putChunks(alice, id, bytes, chunkSize, [...Array(created.json.chunkCount as number).keys()]);

    // B never saw the chunks, so it hashes all 60 MB from the file; A's hash is done as the chunks landed
    const onB = aliceOnB.post(`/api/uploads/${id}/complete`);
    await vi.waitFor(async () => expect((await alice.get(`/api/uploads/${id}`)).json.state).toBe('verifying'), { timeout: 5000, interval: 5 });
    const onA = await alice.post(`/api/uploads/${id}/complete`);
    expect({ status: onA.status, body: onA.json }).toEqual({ status: 202, body: { state: 'verifying' } });

    const finals = await Promise.all([onB.then((first) => (first.status === 202 ? complete(aliceOnB, id) : first)), complete(alice, id)]);
    expect(finals.map((answer) => answer.status).sort()).toEqual([200, 201]);
    expect(finals[0]!.json.id).toBe(finals[1]!.json.id);
    expect((await downloaded(alice, nodeA, 'verified-once.bin')).equals(bytes)).toBe(true);
    expect((await alice.get('/api/files?folder=/')).json.files).toHaveLength(1);
  });

  it('answers 404 to a chunk still arriving on one when the upload is cancelled on the other, and records nothing of it', async () => {
    const alice = await newUser(nodeA);
    const aliceOnB = new ApiClient(nodeB.baseUrl, alice.token);
    const chunkSize = 4 * MiB;
    const chunk = randomBytes(chunkSize);
    const id = (await alice.post('/api/uploads', { name: 'cancelled.bin', size: 2 * chunkSize, chunkSize })).json.uploadId as string;
    const onA = http.request(`${nodeA.baseUrl}/api/uploads/${id}/chunks/0`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${alice.token}`, 'content-length': String(chunkSize) },
    });
    onA.on('error', () => undefined);
    const answer = new Promise<number>((resolve) => onA.on('response', (res) => (res.resume(), resolve(res.statusCode!))));
    onA.write(chunk.subarray(0, 3 * MiB));
    await new Promise((resolve) => setTimeout(resolve, 500));

    expect((await aliceOnB.request('DELETE', `/api/uploads/${id}`)).status).toBe(204);
    onA.end(chunk.subarray(3 * MiB));
    expect(await answer).toBe(404);
    expect((await alice.get(`/api/uploads/${id}`)).status).toBe(404);
    const redis = new Redis(nodeA.services.config.REDIS_URL!);
    try {
      expect(await new RedisChunkTracker(redis, nodeA.services.config.REDIS_KEY_PREFIX).received(id, 2)).toEqual([false, false]);
    } finally {
      redis.disconnect();
    }
  });

  it('decides a complete on one and a DELETE on the other sent together by the session row: 201 and 409, or 404 and 204, never 500', async () => {
    const alice = await newUser(nodeA);
    const aliceOnB = new ApiClient(nodeB.baseUrl, alice.token);
    for (let run = 0; run < 8; run++) {
      const bytes = randomBytes(6 * MiB);
      const id = (await alice.post('/api/uploads', { name: `raced-${run}.bin`, size: bytes.length, sha1: sha1(bytes), chunkSize: 2 * MiB })).json.uploadId as string;
      await putChunks(alice, id, bytes, 2 * MiB, [0, 1, 2]);
      const { completed, cancelled } = await completeRacingCancel(alice, aliceOnB, id, run - 3);
      const outcome = `complete ${completed.status}, DELETE ${cancelled.status}`;
      expect(['complete 201, DELETE 409', 'complete 201, DELETE 204', 'complete 404, DELETE 204'], `run ${run}`).toContain(outcome);
      // read back where it was completed: node B keeps no memory of alice's writes on A (read-your-writes
      // is per process), so it may read from a replica that has not caught up yet
      if (completed.status === 201) expect((await downloaded(alice, nodeA, `raced-${run}.bin`)).equals(bytes)).toBe(true);
      else expect((await aliceOnB.get(`/api/uploads/${id}`)).status).toBe(404);
    }
  });

  it('serves one tus upload from both: PATCHes alternate between them, HEAD on either shows the offset, and the file has the exact bytes', async () => {
    const alice = await newUser(nodeA);
    const mallory = await newUser(nodeA);
    const bytes = randomBytes(3 * MiB + 5);
    const upload = await create(alice, bytes.length, 'both.bin');
    const cuts = [0, MiB, 2 * MiB + 7, bytes.length];
    const nodes = [nodeA, nodeB, nodeA];
    for (const [i, node] of nodes.entries()) {
      const other = nodes[i] === nodeA ? nodeB : nodeA;
      expect(await offsetOn(alice, on(other, upload))).toBe(cuts[i]);
      const patch = await tus(alice, 'PATCH', on(node, upload), { ...OCTETS, 'upload-offset': String(cuts[i]) }, bytes.subarray(cuts[i], cuts[i + 1]));
      expect(patch.status).toBe(204);
    }
    expect(await offsetOn(alice, on(nodeB, upload))).toBe(bytes.length);
    expect((await tus(mallory, 'HEAD', on(nodeB, upload))).status).toBe(404);
    expect((await downloaded(alice, nodeB, 'both.bin')).equals(bytes)).toBe(true);
  });

  it('makes a stalled tus PATCH on one let go when the client resumes on the other, and the upload completes with the exact bytes', async () => {
    const alice = await newUser(nodeA);
    const bytes = randomBytes(4 * MiB);
    const upload = await create(alice, bytes.length, 'resumed.bin');
    const sent = 2 * MiB + 12_345;
    // a PATCH on A that stops sending and stays open (a client whose connection went half-open)
    const stalled = http.request(on(nodeA, upload), {
      method: 'PATCH',
      headers: { ...OCTETS, authorization: `Bearer ${alice.token}`, 'upload-offset': '0', 'content-length': String(bytes.length) },
    });
    stalled.on('error', () => undefined);
    const stalledAnswer = new Promise<number>((resolve) => stalled.on('response', (res) => (res.resume(), resolve(res.statusCode!))));
    stalled.write(bytes.subarray(0, sent));
    try {
      await vi.waitFor(async () => expect(await offsetOn(alice, on(nodeB, upload))).toBeGreaterThanOrEqual(MiB), { timeout: 10_000, interval: 100 });

      // the client resumes on B from where it started: B waits for A to let go, then sees the offset moved
      const started = performance.now();
      const resumed = await tus(alice, 'PATCH', on(nodeB, upload), { ...OCTETS, 'upload-offset': '0' }, bytes);
      expect(resumed.status).toBe(409);
      expect(performance.now() - started).toBeLessThan(10_000);
      expect(await stalledAnswer).toBe(204);
    } finally {
      stalled.destroy();
    }

    const kept = await offsetOn(alice, on(nodeB, upload));
    expect(kept).toBeGreaterThanOrEqual(MiB);
    expect(kept).toBeLessThanOrEqual(sent);
    const rest = await tus(alice, 'PATCH', on(nodeB, upload), { ...OCTETS, 'upload-offset': String(kept) }, bytes.subarray(kept));
    expect(rest.status).toBe(204);
    expect((await downloaded(alice, nodeA, 'resumed.bin')).equals(bytes)).toBe(true);
  });
});
