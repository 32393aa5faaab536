import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startRelay } from '../support/relay.js';
import { SERVICE_DEFAULTS, createScratchDatabase, servicesAvailable } from '../support/services.js';
import { sleep, startWorker } from '../support/workers.js';

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe('the worker metrics endpoint', () => {
  it('answers 503 while Redis is unreachable, and the worker keeps running and serves 200 once Redis is back', async () => {
    if (!(await servicesAvailable('worker-metrics', ['mariadb-pair', 'redis', 'ceph-rgw']))) return;
    const scratch = await createScratchDatabase();
    cleanups.push(scratch.drop);
    const dataDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'filestore-worker-metrics-'));
    cleanups.push(() => fsp.rm(dataDir, { recursive: true, force: true }));
    const redis = await startRelay(SERVICE_DEFAULTS.REDIS_URL);
    cleanups.push(() => redis.close());
    const worker = await startWorker({
      FILESTORE_PROFILE: 'cluster', ...SERVICE_DEFAULTS, DB_PRIMARY_URL: scratch.primaryUrl, DB_REPLICA_URL: scratch.replicaUrl,
      REDIS_URL: redis.url, REDIS_KEY_PREFIX: `filestore-wm:${process.pid}:`, DATA_DIR: dataDir, HOST: '127.0.0.1', LOG_LEVEL: 'info',
    });
    cleanups.push(() => worker.stop());
    const scrape = () => fetch(`http://127.0.0.1:${worker.metricsPort}/metrics`, { signal: AbortSignal.timeout(20_000) });

    expect((await scrape()).status).toBe(200);
    redis.cut();
    // the queue gauge asks Redis; its failure was an unhandled rejection that ended the worker
    expect((await scrape()).status).toBe(503);
    await sleep(500);
    expect(worker.child.exitCode).toBeNull();
    redis.restore();
    await expect.poll(async () => (await scrape()).status, { timeout: 20_000, interval: 500 }).toBe(200);
  }, 90_000);
});
