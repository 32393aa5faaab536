import type { Logger } from 'pino';
import type { Database } from '../db/database.js';
import {
  BACKOFF_BASE_MS, JOB_ATTEMPTS, QUEUE_NAMES,
  type EnqueueOptions, type JobEvent, type JobPayloads, type JobQueue, type Processors, type QueueName, type QueueStats,
} from './job-queue.js';

interface JobRow {
  id: number;
  queue: QueueName;
  job_key: string | null;
  payload: string;
  state: 'waiting' | 'active' | 'failed' | 'scheduled';
  attempts: number;
  run_at: number;
  error: string | null;
  failed_at: number | null;
}

const POLL_MS = 250;
const SCHEDULE_TICK_MS = 1000;

/**
 * The embedded profile's queue: jobs are rows in SQLite, run in-process one at a time per queue. Rows
 * outlive the process, and jobs that were running when it died are run again at the next start (a kill
 * counts as an attempt).
 */
export class SqlJobQueue implements JobQueue {
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly busy = new Set<QueueName>();
  private readonly schedules = new Map<QueueName, number>();
  private stopped = false;
  private running: Promise<void>[] = [];

  constructor(
    private readonly db: Database,
    private readonly logger: Logger,
  ) {}

  async enqueue<Q extends QueueName>(queue: Q, payload: JobPayloads[Q], options: EnqueueOptions = {}): Promise<void> {
    const now = Date.now();
    await this.db.write(null, async (db) => {
      if (options.key) await db('jobs').where({ job_key: options.key, state: 'failed' }).delete();
      await db('jobs')
        .insert({ queue, job_key: options.key ?? null, payload: JSON.stringify(payload), state: 'waiting', attempts: 0, run_at: now, created_at: now })
        .onConflict('job_key')
        .ignore();
    });
  }

  /**
   * A schedule is a row of its own (state 'scheduled', key `every:<queue>`) whose run_at is its next due
   * time, so the due time outlives the process: an in-memory timer restarted at every start never ran a
   * schedule whose interval (the hourly verify sweep) was longer than the process lived. Its first run is
   * at once, as BullMQ's scheduler does. Each due time queues a job under `schedule:<queue>`, which runs,
   * retries and fails like any other.
   */
  async schedule<Q extends QueueName>(queue: Q, payload: JobPayloads[Q], everyMs: number): Promise<void> {
    const now = Date.now();
    await this.db.transaction(null, async (trx) => {
      await trx('jobs')
        .insert({ queue, job_key: `every:${queue}`, payload: JSON.stringify(payload), state: 'scheduled', attempts: 0, run_at: now, created_at: now })
        .onConflict('job_key')
        .ignore();
      // a changed payload applies from now, as a shortened interval does (queueDue)
      await trx('jobs').where({ job_key: `every:${queue}` }).update({ payload: JSON.stringify(payload) });
    });
    if (this.schedules.size === 0) {
      const timer = setInterval(() => {
        if (!this.stopped) this.queueDue().catch((error: unknown) => this.logger.warn({ err: error }, 'scheduling a job failed'));
      }, SCHEDULE_TICK_MS);
      timer.unref();
      this.timers.push(timer);
    }
    this.schedules.set(queue, everyMs);
    await this.queueDue();
  }

  async process(processors: Processors, onJob?: (event: JobEvent) => void): Promise<void> {
    // Jobs left active died with the process. Their claim counted the attempt: one that has used up its
    // attempts so (it may be what killed the process) is failed, not run again at every start — as a
    // worker's stalls are bounded by BullMQ's maxStalledCount in the cluster.
    await this.db.transaction(null, async (trx) => {
      await trx('jobs')
        .where({ state: 'active' })
        .where('attempts', '>=', JOB_ATTEMPTS)
        .update({ state: 'failed', error: 'the process stopped while the job ran, at every attempt', failed_at: Date.now() });
      await trx('jobs').where({ state: 'active' }).update({ state: 'waiting' });
    });
    const poll = setInterval(() => {
      for (const queue of QUEUE_NAMES) if (!this.busy.has(queue) && !this.stopped) this.runNext(queue, processors, onJob);
    }, POLL_MS);
    poll.unref();
    this.timers.push(poll);
  }

  async stats(): Promise<QueueStats> {
    const rows = await this.db.readPrimary((db) => db<JobRow>('jobs').select('*'));
    const queues = Object.fromEntries(QUEUE_NAMES.map((name) => [name, { waiting: 0, active: 0, failed: 0 }])) as QueueStats['queues'];
    // a schedule's row is its due time, not a job
    for (const row of rows) if (row.state !== 'scheduled') queues[row.queue][row.state] += 1;
    const failed = rows
      .filter((row) => row.state === 'failed')
      .map((row) => ({ id: String(row.id), queue: row.queue, attempts: row.attempts, error: row.error ?? '', failedAt: new Date(Number(row.failed_at)).toISOString() }));
    return { queues, failed };
  }

  async close(): Promise<void> {
    this.stopped = true;
    for (const timer of this.timers) clearInterval(timer);
    await Promise.allSettled(this.running);
  }

  /**
   * Queues a job for each schedule of this process that is due, and moves its due time on. A due time
   * more than one interval away was set before the clock was stepped back: it is brought in to one
   * interval from now, or the schedule would wait out the step (the timer it replaced was monotonic).
   */
  private async queueDue(): Promise<void> {
    const now = Date.now();
    const rows = await this.db.readPrimary((db) => db<JobRow>('jobs').where({ state: 'scheduled' }).select('*'));
    for (const row of rows) {
      const everyMs = this.schedules.get(row.queue);
      if (everyMs === undefined || (row.run_at > now && row.run_at <= now + everyMs)) continue;
      // conditional on the due time read: of two ticks that both saw it (or two processes), one acts
      const moved = await this.db.write(null, (db) => db('jobs').where({ id: row.id, run_at: row.run_at }).update({ run_at: now + everyMs }));
      if (moved === 1 && row.run_at <= now) await this.enqueue(row.queue, JSON.parse(row.payload), { key: `schedule:${row.queue}` });
    }
  }

  private runNext(queue: QueueName, processors: Processors, onJob?: (event: JobEvent) => void): void {
    this.busy.add(queue);
    const run = this.claim(queue)
      .then(async (job) => {
        if (!job) return;
        const started = process.hrtime.bigint();
        const seconds = () => Number(process.hrtime.bigint() - started) / 1e9;
        try {
          await (processors[queue] as (payload: unknown) => Promise<void>)(JSON.parse(job.payload));
          await this.db.write(null, (db) => db('jobs').where({ id: job.id }).delete());
          onJob?.({ queue, seconds: seconds(), outcome: 'completed' });
        } catch (error) {
          onJob?.({ queue, seconds: seconds(), outcome: 'failed' });
          await this.fail(job, error);
        }
      })
      .catch((error: unknown) => this.logger.error({ err: error, queue }, 'job bookkeeping failed'))
      .finally(() => {
        this.busy.delete(queue);
        this.running = this.running.filter((p) => p !== run);
      });
    this.running.push(run);
  }

  private async claim(queue: QueueName): Promise<JobRow | undefined> {
    return this.db.transaction(null, async (trx) => {
      const job = await trx<JobRow>('jobs').where({ queue, state: 'waiting' }).where('run_at', '<=', Date.now()).orderBy('run_at').first();
      if (!job) return undefined;
      await trx('jobs').where({ id: job.id }).update({ state: 'active', attempts: job.attempts + 1 });
      return { ...job, attempts: job.attempts + 1 };
    });
  }

  private async fail(job: JobRow, error: unknown): Promise<void> {
    const message = error instanceof Error ? error.message : String(error);
    this.logger.warn({ queue: job.queue, jobId: job.id, attempt: job.attempts, err: error }, 'job attempt failed');
    const change =
      job.attempts >= JOB_ATTEMPTS
        ? { state: 'failed', error: message, failed_at: Date.now() }
        : { state: 'waiting', error: message, run_at: Date.now() + BACKOFF_BASE_MS * 2 ** (job.attempts - 1) };
    await this.db.write(null, (db) => db('jobs').where({ id: job.id }).update(change));
  }
}
