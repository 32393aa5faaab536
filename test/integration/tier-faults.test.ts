import { randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { JobEvent } from '../../src/jobs/job-queue.js';
import { runJobs } from '../../workers/schedules.js';
import { startApp, type RunningApp } from '../support/app.js';
import { expectErrorBody, newUser, sha1 } from '../support/files.js';
import { freezeGateway, multipartUploads, removeObjects, restoreGateway, s3Answers, stopGateway } from '../support/rgw.js';
import { servicesAvailable } from '../support/services.js';
import { MiB } from '../support/uploads.js';
import { archiveKeyOf, contentOf, downloadSha1, sample, startWorker, uploadLarge, waitFor, waitForTier, workerEnv, type WorkerProcess } from '../support/workers.js';

/**
 * Faults of the cluster profile's S3 tier: a worker killed mid-transfer, a Ceph gateway that is frozen
 * or down. These tests stop the shared radosgw, so vitest runs this file alone, after every other file
 * (vitest.config.ts), and each test restores the gateway whatever happens.
 */
const cluster = await servicesAvailable('tier faults (cluster profile)', ['mariadb-pair', 'redis', 'ceph-rgw']);

type User = Awaited<ReturnType<typeof newUser>>;

describe.runIf(cluster)('the S3 tier under faults (cluster profile)', () => {
  const cleanups: Array<() => Promise<unknown>> = [];
  afterEach(async () => {
    // the gateway first: the apps' cleanup and every later test need S3
    await restoreGateway();
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
  });
  afterAll(async () => {
    await restoreGateway();
    expect(await s3Answers()).toBe(true);
  });

  async function appWith(env: Record<string, string> = {}, jobs = false): Promise<RunningApp> {
    const app = await startApp('cluster', env, { jobs });
    cleanups.push(() => app.close());
    return app;
  }
  /** Uploads `bytes` through the API (multipart) and arranges for its S3 objects to be removed afterwards. */
  async function uploaded(user: User, name: string, bytes: Buffer): Promise<{ id: string; hash: string }> {
    const hash = sha1(bytes);
    cleanups.push(() => removeObjects(`blobs/${hash}/`));
    const answer = await uploadLarge(user, name, bytes);
    if (answer.status !== 201) throw new Error(`upload: ${answer.status} ${JSON.stringify(answer.json)}`);
    return { id: answer.json.id as string, hash };
  }
  async function worker(app: RunningApp): Promise<WorkerProcess> {
    const started = await startWorker(workerEnv(app));
    cleanups.push(() => started.stop());
    return started;
  }
  /** Downloads the file again and again until stopped; every answer is recorded. */
  function downloadLoop(user: User, id: string) {
    const results: Array<{ status: number; sha1: string; size: number }> = [];
    let stopped = false;
    const running = (async () => {
      while (!stopped) results.push(await downloadSha1(user, id));
    })();
    return { results, stop: async () => ((stopped = true), await running, results) };
  }

  it('finishes a 200 MB transfer whose worker was killed -9 mid-upload, serving the bytes from one tier or the other throughout', { timeout: 300_000 }, async () => {
    const app = await appWith();
    const alice = await newUser(app);
    const bytes = randomBytes(200 * MiB);
    const { id, hash } = await uploaded(alice, 'big.bin', bytes);
    const landed = await contentOf(app, id);
    expect(landed).toMatchObject({ tier: 'local', status: 'available' });
    const localFile = path.join(app.dataDir, 'blobs', landed.location);
    const expectLocal = async (present: boolean) => expect(await fsp.stat(localFile).then(() => true, () => false)).toBe(present);
    const good = { status: 200, sha1: hash, size: bytes.length };
    const loop = downloadLoop(alice, id);

    const first = await worker(app);
    await waitFor('the transfer to start a multipart upload', async () => (await multipartUploads(`blobs/${hash}/`)).length > 0, 60_000, 50);
    await first.stop('SIGKILL');
    expect(await contentOf(app, id)).toMatchObject({ tier: 'local', location: landed.location });
    expect(first.logLines().some((line) => line.msg === 'blob moved to s3')).toBe(false);
    await expectLocal(true);
    expect(await downloadSha1(alice, id)).toEqual(good);

    const killedAt = Date.now();
    const second = await worker(app);
    // BullMQ sees the job's lock expire (lockDuration 10 s, checked every 5 s) and runs it again
    const moved = await waitForTier(app, id, 's3', 120_000);
    const recoveredInMs = Date.now() - killedAt;
    expect(moved.location).toBe(archiveKeyOf(landed));
    await waitFor('the local copy to go', async () => !(await fsp.stat(localFile).then(() => true, () => false)), 10_000);
    // the worker logs the move after deleting the local copy; its line may still be in the pipe
    await waitFor('the worker to log the move', async () => second.logLines().some((line) => line.msg === 'blob moved to s3'), 10_000);
    expect(second.logLines().find((line) => line.msg === 'blob moved to s3')).toMatchObject({ fileId: landed.id, size: bytes.length });
    expect(await downloadSha1(alice, id)).toEqual(good);

    const results = await loop.stop();
    expect(results.length).toBeGreaterThan(2);
    expect(results.filter((result) => JSON.stringify(result) !== JSON.stringify(good))).toEqual([]);
    console.info(`200 MB transfer recovered ${recoveredInMs} ms after the kill; ${results.length} downloads during the move, all byte-equal`);

    const metrics = await (await fetch(`http://127.0.0.1:${second.metricsPort}/metrics`)).text();
    expect(sample(metrics, 'filestore_job_duration_seconds_count', { queue: 'transfer', outcome: 'completed' })).toBe(1);
    expect(sample(metrics, 'filestore_queue_jobs', { queue: 'transfer', state: 'failed' })).toBe(0);
  });

  it('retries a transfer cut off by the gateway going down (attempts > 1) and completes it once the gateway is back', { timeout: 180_000 }, async () => {
    const app = await appWith();
    const alice = await newUser(app);
    const bytes = randomBytes(64 * MiB);
    const { id, hash } = await uploaded(alice, 'retried.bin', bytes);
    const events: JobEvent[] = [];
    await runJobs(app.services, (event) => events.push(event));
    await waitFor('the transfer to start a multipart upload', async () => (await multipartUploads(`blobs/${hash}/`)).length > 0, 60_000, 20);
    await stopGateway({ kill: true });
    const transfers = () => events.filter((event) => event.queue === 'transfer');
    await waitFor('two failed transfer attempts', async () => transfers().filter((event) => event.outcome === 'failed').length >= 2, 30_000);
    const landed = await contentOf(app, id);
    expect(landed).toMatchObject({ tier: 'local' });
    expect(await downloadSha1(alice, id)).toEqual({ status: 200, sha1: hash, size: bytes.length });

    await restoreGateway();
    const moved = await waitForTier(app, id, 's3', 60_000);
    expect(moved.location).toBe(archiveKeyOf(landed));
    // the row switches inside the processor; its attempt is reported once the processor has returned
    await waitFor('the transfer attempt to report completion', async () => transfers().at(-1)?.outcome === 'completed', 30_000);
    expect(transfers().at(-1)?.outcome).toBe('completed');
    expect(transfers().length).toBeGreaterThan(1);
    expect(await downloadSha1(alice, id)).toEqual({ status: 200, sha1: hash, size: bytes.length });
    const orphans = (await multipartUploads(`blobs/${hash}/`)).length;
    console.info(`transfer attempts: ${transfers().map((event) => event.outcome).join(', ')}; unfinished multipart uploads left in S3: ${orphans}`);
    const stats = await app.services.jobs.stats();
    expect(stats.queues.transfer).toEqual({ waiting: 0, active: 0, failed: 0 });
  });

  for (const outage of ['frozen (SIGSTOP)', 'down (killed)'] as const) {
    it(`answers 503 storage_unavailable with Retry-After in under 10 s while the gateway is ${outage}, and 200 once it is back`, { timeout: 120_000 }, async () => {
      const app = await appWith({}, true);
      const alice = await newUser(app);
      const bytes = randomBytes(MiB + 3);
      const { id } = await uploaded(alice, 'in-s3.bin', bytes);
      await waitForTier(app, id, 's3');
      expect((await alice.get(`/api/files/${id}/content`)).status).toBe(200);

      if (outage === 'frozen (SIGSTOP)') await freezeGateway();
      else await stopGateway();
      for (const headers of [{}, { range: 'bytes=0-99' }] as Array<Record<string, string>>) {
        const started = Date.now();
        const answer = await alice.get(`/api/files/${id}/content`, headers);
        const elapsed = Date.now() - started;
        console.info(`GET while the gateway is ${outage}: ${answer.status} after ${elapsed} ms`);
        expect(answer.status).toBe(503);
        expect(expectErrorBody(answer.json).code).toBe('storage_unavailable');
        expect(Number(answer.headers.get('retry-after'))).toBeGreaterThan(0);
        // the content headers set before the read failed are not sent with the JSON error
        expect(answer.headers.get('etag')).not.toBe(`"${sha1(bytes)}"`);
        expect(answer.headers.get('content-disposition')).toBeNull();
        expect(elapsed).toBeLessThan(10_000);
      }
      // metadata does not need the gateway
      expect((await alice.get(`/api/files/${id}`)).status).toBe(200);
      const health = await alice.get('/healthz');
      expect(health.status).toBe(503);
      expect(health.json.checks.s3).toMatch(/^failing/);

      await restoreGateway();
      const back = await waitFor('a download to succeed again', async () => {
        const answer = await alice.get(`/api/files/${id}/content`);
        return answer.status === 200 ? answer : undefined;
      }, 30_000, 500);
      expect(back.bytes.equals(bytes)).toBe(true);
      expect((await alice.get('/healthz')).status).toBe(200);
    });
  }
});
