import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { Database } from '../../src/db/database.js';
import { openSqlite } from '../../src/db/knex.js';
import { migrateToLatest } from '../../src/db/migrate.js';
import { BullJobQueue } from '../../src/jobs/job-queue.bullmq.js';
import { JOB_ATTEMPTS, type JobQueue, type Processors, type QueueName } from '../../src/jobs/job-queue.js';
import { SqlJobQueue } from '../../src/jobs/job-queue.sql.js';
import { scratchRedis, SERVICE_DEFAULTS, servicesAvailable } from '../support/services.js';
import { sleep, waitFor } from '../support/workers.js';

const logger = pino({ level: 'silent' });

/** Where one adapter keeps its jobs; `open` is a new process's queue on the same storage (a restart). */
interface Backend {
  open(): JobQueue;
  close(): Promise<void>;
}

async function embedded(): Promise<Backend> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'job-queue-contract-'));
  const sqlite = openSqlite(dir);
  await migrateToLatest(sqlite);
  const db = new Database(sqlite, sqlite, { readYourWritesMs: 0, logger });
  return {
    open: () => new SqlJobQueue(db, logger),
    close: async () => {
      await sqlite.destroy();
      await fsp.rm(dir, { recursive: true, force: true });
    },
  };
}

async function cluster(): Promise<Backend> {
  const redis = scratchRedis();
  return {
    open: () => new BullJobQueue(SERVICE_DEFAULTS.REDIS_URL, `${redis.prefix}bull`, { logger, commandTimeoutMs: 2000 }),
    close: () => redis.close(),
  };
}

type Run = { queue: QueueName; payload: unknown };

/** Processors that record each run and do what `behave` says (by default: succeed at once). */
function recorder(behave: (run: Run, runs: Run[]) => Promise<void> = async () => {}) {
  const runs: Run[] = [];
  const handle = (queue: QueueName) => async (payload: unknown) => {
    const run = { queue, payload };
    runs.push(run);
    await behave(run, runs);
  };
  const processors = { transfer: handle('transfer'), verify: handle('verify'), gc: handle('gc') } as Processors;
  return { runs, processors };
}

const redisUp = await servicesAvailable('job queue contract (cluster)', ['redis']);
const adapters = [
  { name: 'embedded (SQLite)', open: embedded, enabled: true },
  { name: 'cluster (BullMQ)', open: cluster, enabled: redisUp },
];

for (const adapter of adapters) {
  describe.skipIf(!adapter.enabled)(`job queue contract: ${adapter.name}`, () => {
    let backend: Backend;
    let opened: JobQueue[] = [];
    const open = () => {
      const queue = backend.open();
      opened.push(queue);
      return queue;
    };
    beforeAll(async () => {
      backend = await adapter.open();
    });
    afterEach(async () => {
      await Promise.all(opened.map((queue) => queue.close()));
      opened = [];
    });
    afterAll(async () => {
      await backend.close();
    });

    it('runs an enqueued job once, with its payload, on its queue', async () => {
      const queue = open();
      const { runs, processors } = recorder();
      await queue.process(processors);
      await queue.enqueue('verify', { fileId: 7 });
      await waitFor('the job to run', async () => runs.length === 1, 10_000);
      await sleep(500);
      expect(runs).toEqual([{ queue: 'verify', payload: { fileId: 7 } }]);
      expect((await queue.stats()).queues.verify).toEqual({ waiting: 0, active: 0, failed: 0 });
    });

    it('runs a key enqueued twice while it waits once, and again when enqueued after it finished', async () => {
      const queue = open();
      const { runs, processors } = recorder();
      await queue.enqueue('transfer', { fileId: 1 }, { key: 'transfer:1' });
      await queue.enqueue('transfer', { fileId: 1 }, { key: 'transfer:1' });
      await queue.process(processors);
      await waitFor('the first run', async () => runs.length === 1, 10_000);
      await sleep(500);
      expect(runs).toHaveLength(1);
      await queue.enqueue('transfer', { fileId: 1 }, { key: 'transfer:1' });
      await waitFor('the second run', async () => runs.length === 2, 10_000);
    });

    it('drops an enqueue whose key is running (the port documents it; the transfer sweep relies on it)', async () => {
      const queue = open();
      let release!: () => void;
      const held = new Promise<void>((resolve) => (release = resolve));
      const { runs, processors } = recorder(() => held);
      await queue.process(processors);
      await queue.enqueue('transfer', { fileId: 2 }, { key: 'transfer:2' });
      await waitFor('the job to start', async () => runs.length === 1, 10_000);
      await queue.enqueue('transfer', { fileId: 2 }, { key: 'transfer:2' });
      release();
      await sleep(1500);
      expect(runs).toHaveLength(1);
    });

    it(`retries a throwing job with backoff, ${JOB_ATTEMPTS} attempts in all, keeps it failed with its error, and its key enqueued again replaces it`, { timeout: 60_000 }, async () => {
      const queue = open();
      const { runs, processors } = recorder(async (_run, runs) => {
        if (runs.length <= JOB_ATTEMPTS) throw new Error('boom');
      });
      await queue.process(processors);
      const started = Date.now();
      await queue.enqueue('verify', { fileId: 3 }, { key: 'verify:3' });
      await waitFor('the job to fail for good', async () => (await queue.stats()).queues.verify.failed === 1, 40_000, 200);
      // 1 + 2 + 4 + 8 s between the attempts
      expect(Date.now() - started).toBeGreaterThan(14_000);
      expect(runs).toHaveLength(JOB_ATTEMPTS);
      await sleep(2500);
      expect(runs).toHaveLength(JOB_ATTEMPTS);
      const { failed } = await queue.stats();
      expect(failed).toEqual([expect.objectContaining({ queue: 'verify', attempts: JOB_ATTEMPTS, error: 'boom' })]);
      await queue.enqueue('verify', { fileId: 3 }, { key: 'verify:3' });
      await waitFor('the replacement to run', async () => runs.length === JOB_ATTEMPTS + 1, 10_000);
      expect((await queue.stats()).queues.verify.failed).toBe(0);
    });

    it('runs a schedule once per interval however often it is registered', { timeout: 30_000 }, async () => {
      const queue = open();
      const { runs, processors } = recorder();
      await queue.process(processors);
      await queue.schedule('gc', {}, 2000);
      await queue.schedule('gc', {}, 2000);
      await sleep(5000);
      // first run at once or after one interval, then every 2 s: 2 or 3 runs in 5 s, never one per registration
      expect(runs.length).toBeGreaterThanOrEqual(2);
      expect(runs.length).toBeLessThanOrEqual(3);
      expect(runs.every((run) => run.queue === 'gc')).toBe(true);
    });

    it('runs a schedule when its process restarts more often than its interval (every deploy within the hour)', { timeout: 30_000 }, async () => {
      const { runs, processors } = recorder();
      for (let start = 0; start < 5; start++) {
        const queue = backend.open();
        await queue.process(processors);
        await queue.schedule('verify', { sweep: true }, 3000);
        await sleep(1000);
        await queue.close();
      }
      // 5 s over processes that each lived 1 s: the 3 s schedule ran, and its due time outlived each
      // process (at most twice: it does not run at every start either)
      const sweeps = runs.filter((run) => run.queue === 'verify').length;
      expect(sweeps).toBeGreaterThanOrEqual(1);
      expect(sweeps).toBeLessThanOrEqual(2);
    });
  });
}

describe('embedded job queue: a job its process dies in', () => {
  it(`is run again at each start, ${JOB_ATTEMPTS} runs in all, then kept failed: a job that kills its process does not crash-loop it`, { timeout: 30_000 }, async () => {
    const backend = await embedded();
    const { runs, processors } = recorder(() => new Promise(() => {}));
    try {
      const first = backend.open();
      await first.enqueue('verify', { fileId: 9 }, { key: 'verify:9' });
      for (let start = 1; start <= JOB_ATTEMPTS + 1; start++) {
        const queue = start === 1 ? first : backend.open();
        await queue.process(processors);
        await waitFor(`run ${start}`, async () => runs.length >= start, 2000).catch(() => {});
        // a kill: the process stops polling and the job never ends (its promise is left hanging)
        void queue.close();
      }
      expect(runs).toHaveLength(JOB_ATTEMPTS);
      const { queues, failed } = await backend.open().stats();
      expect(queues.verify).toEqual({ waiting: 0, active: 0, failed: 1 });
      expect(failed).toEqual([expect.objectContaining({ queue: 'verify', attempts: JOB_ATTEMPTS })]);
    } finally {
      await backend.close();
    }
  });
});

describe('embedded job queue: a schedule whose clock is set back', () => {
  it('still runs every interval: its due time is never further off than one interval', { timeout: 30_000 }, async () => {
    const backend = await embedded();
    const { runs, processors } = recorder();
    const queue = backend.open();
    try {
      await queue.process(processors);
      await queue.schedule('gc', {}, 2000);
      await waitFor('the first run', async () => runs.length === 1, 3000);
      // an NTP step back by a day: the due time read from the table is now a day and 2 s away
      const realNow = Date.now.bind(Date);
      vi.spyOn(Date, 'now').mockImplementation(() => realNow() - 86_400_000);
      await waitFor('a run after the step', async () => runs.length >= 2, 6000);
    } finally {
      vi.restoreAllMocks();
      await queue.close();
      await backend.close();
    }
  });
});
