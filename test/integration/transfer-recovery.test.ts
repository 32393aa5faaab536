import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startApp, type RunningApp } from '../support/app.js';
import { blobFiles, newUser, sha1 } from '../support/files.js';
import { removeObjects } from '../support/rgw.js';
import { startRelay } from '../support/relay.js';
import { servicesAvailable } from '../support/services.js';
import { MiB } from '../support/uploads.js';
import { archiveKeyOf, contentOf, downloadSha1, freePort, startWorker, waitFor, waitForTier, workerEnv, type WorkerProcess } from '../support/workers.js';

const cluster = await servicesAvailable('transfer recovery (cluster profile)', ['mariadb-pair', 'redis', 'ceph-rgw']);

describe.runIf(cluster)('a transfer that failed for good is carried through in the end (cluster profile)', () => {
  let app: RunningApp;
  const workers: WorkerProcess[] = [];
  const sha1s: string[] = [];

  const worker = async (env: Record<string, string> = {}) => {
    const started = await startWorker({ ...workerEnv(app), ...env });
    workers.push(started);
    return started;
  };
  /** Uploads random bytes (not yet moved: no worker runs) and returns the user file id and its content row as it landed. */
  const upload = async (size: number) => {
    const user = await newUser(app);
    const bytes = randomBytes(size);
    sha1s.push(sha1(bytes));
    const answer = await user.upload('/api/files', { name: 'big.bin', bytes });
    expect(answer.status).toBe(201);
    const row = await contentOf(app, answer.json.id);
    expect(row.tier).toBe('local');
    return { user, bytes, id: answer.json.id as string, landed: row };
  };
  /** The file ends in S3 with its exact bytes, and no blob file is left under DATA_DIR. */
  const expectMoved = async ({ user, bytes, id }: Awaited<ReturnType<typeof upload>>) => {
    await waitForTier(app, id, 's3', 90_000);
    await waitFor('the local blob to go', async () => (await blobFiles(app)).length === 0, 10_000);
    expect(await downloadSha1(user, id)).toEqual({ status: 200, sha1: sha1(bytes), size: bytes.length });
  };

  beforeEach(async () => {
    app = await startApp('cluster');
  });
  afterEach(async () => {
    for (const started of workers.splice(0)) await started.stop();
    await app?.close();
  });
  afterAll(async () => {
    for (const hash of sha1s) await removeObjects(`blobs/${hash}/`).catch(() => undefined);
  });

  it('takes up again a transfer whose worker was killed twice mid-copy: a kill is not a failure', { timeout: 240_000 }, async () => {
    // RGW behind a relay that carries every byte 200 ms late: a transfer lasts long enough to be killed in
    const slowS3 = await startRelay(app.services.config.S3_ENDPOINT!);
    slowS3.delay(200);
    try {
      const file = await upload(8 * MiB + 5);
      for (let kill = 1; kill <= 2; kill += 1) {
        // the killed worker's job stays active until its lock lapses and the next worker takes it up
        const before = slowS3.accepted();
        const slow = await worker({ S3_ENDPOINT: slowS3.url, GC_INTERVAL_SECONDS: '3600' });
        await waitFor(`worker ${kill} to be copying to RGW`, async () => slowS3.accepted() > before, 60_000, 20);
        await slow.stop('SIGKILL');
      }
      expect(await contentOf(app, file.id)).toMatchObject({ tier: 'local' });
      await worker({ GC_INTERVAL_SECONDS: '3600' });
      await expectMoved(file);
      expect((await app.services.jobs.stats()).queues.transfer.failed).toBe(0);
    } finally {
      await slowS3.close();
    }
  });

  it('queues again the transfer of a blob left local after its job failed for good, and the sweep moves it', { timeout: 240_000 }, async () => {
    const file = await upload(3 * MiB + 17);
    // a worker that cannot reach RGW uses up every attempt: the job fails for good
    const unreachable = await worker({ S3_ENDPOINT: `http://127.0.0.1:${await freePort()}`, GC_INTERVAL_SECONDS: '3600' });
    await waitFor('the transfer to fail for good', async () => (await app.services.jobs.stats()).queues.transfer.failed === 1, 90_000, 200);
    await unreachable.stop('SIGKILL');
    expect(await contentOf(app, file.id)).toMatchObject({ tier: 'local', status: 'available' });

    // nothing else is queued for it: only gc's sweep, once the blob is older than TRANSFER_RETRY_AFTER_SECONDS
    await worker({ GC_INTERVAL_SECONDS: '2', TRANSFER_RETRY_AFTER_SECONDS: '1' });
    await expectMoved(file);
    expect((await contentOf(app, file.id)).location).toBe(archiveKeyOf(file.landed));
    expect((await app.services.jobs.stats()).queues.transfer.failed).toBe(0);
  });
});
