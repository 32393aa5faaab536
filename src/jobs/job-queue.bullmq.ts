import { Queue, Worker } from 'bullmq';
import type { Logger } from 'pino';
import {
  BACKOFF_BASE_MS, JOB_ATTEMPTS, QUEUE_NAMES,
  type EnqueueOptions, type JobEvent, type JobPayloads, type JobQueue, type Processors, type QueueName, type QueueStats,
} from './job-queue.js';

/** The cluster profile's queue: one BullMQ queue per name on Redis; workers run in workers/main.ts. */
export class BullJobQueue implements JobQueue {
  private readonly queues: Record<QueueName, Queue>;
  private readonly workers: Worker[] = [];

  constructor(
    private readonly url: string,
    private readonly prefix: string,
    private readonly options: { logger: Logger; commandTimeoutMs: number },
  ) {
    this.queues = Object.fromEntries(
      QUEUE_NAMES.map((name) => [
        name,
        this.logErrors(new Queue(name, {
          // an enqueue (a request may wait on one) gives up in bounded time; workers block, and do not
          connection: { url, commandTimeout: options.commandTimeoutMs },
          prefix,
          defaultJobOptions: {
            attempts: JOB_ATTEMPTS,
            backoff: { type: 'exponential', delay: BACKOFF_BASE_MS },
            removeOnComplete: 1000,
            removeOnFail: 5000,
          },
        }), name),
      ]),
    ) as Record<QueueName, Queue>;
  }

  async enqueue<Q extends QueueName>(queue: Q, payload: JobPayloads[Q], options: EnqueueOptions = {}): Promise<void> {
    // BullMQ ids may not contain ':'; a completed job with the same id is removed so the key can run again.
    const jobId = options.key?.replaceAll(':', '-');
    if (jobId) {
      const existing = await this.queues[queue].getJob(jobId);
      if (existing && ((await existing.isCompleted()) || (await existing.isFailed()))) await existing.remove();
    }
    await this.queues[queue].add(queue, payload, jobId ? { jobId } : {});
  }

  async schedule<Q extends QueueName>(queue: Q, payload: JobPayloads[Q], everyMs: number): Promise<void> {
    await this.queues[queue].upsertJobScheduler(`${queue}-every`, { every: everyMs }, { name: queue, data: payload });
  }

  async process(processors: Processors, onJob?: (event: JobEvent) => void): Promise<void> {
    for (const name of QUEUE_NAMES) {
      const worker = this.logErrors(new Worker(
        name,
        async (job) => {
          const started = process.hrtime.bigint();
          const seconds = () => Number(process.hrtime.bigint() - started) / 1e9;
          try {
            await (processors[name] as (payload: unknown) => Promise<void>)(job.data);
            onJob?.({ queue: name, seconds: seconds(), outcome: 'completed' });
          } catch (error) {
            onJob?.({ queue: name, seconds: seconds(), outcome: 'failed' });
            throw error;
          }
        },
        {
          // blocking commands wait on Redis by design: no per-request retry limit, no command timeout
          connection: { url: this.url, maxRetriesPerRequest: null },
          prefix: this.prefix,
          concurrency: name === 'transfer' ? 2 : 4,
          // a worker killed mid-job loses its lock within seconds, and the job is taken up again
          lockDuration: 10_000,
          stalledInterval: 5_000,
          // a kill is as passing a fault as any error: BullMQ's default (1) failed a transfer for good on its
          // second stall, whatever `attempts` allowed, and left its blob local
          maxStalledCount: JOB_ATTEMPTS,
        },
      ), name);
      this.workers.push(worker);
    }
    await Promise.all(this.workers.map((worker) => worker.waitUntilReady()));
  }

  async stats(): Promise<QueueStats> {
    const entries = await Promise.all(
      QUEUE_NAMES.map(async (name) => {
        const counts = await this.queues[name].getJobCounts('waiting', 'delayed', 'prioritized', 'active', 'failed');
        const failed = await this.queues[name].getFailed(0, 49);
        return { name, counts, failed };
      }),
    );
    return {
      queues: Object.fromEntries(
        entries.map(({ name, counts }) => [
          name,
          { waiting: (counts.waiting ?? 0) + (counts.delayed ?? 0) + (counts.prioritized ?? 0), active: counts.active ?? 0, failed: counts.failed ?? 0 },
        ]),
      ) as QueueStats['queues'],
      failed: entries.flatMap(({ name, failed }) =>
        failed.map((job) => ({
          id: String(job.id),
          queue: name,
          attempts: job.attemptsMade,
          error: job.failedReason ?? '',
          failedAt: new Date(job.finishedOn ?? job.timestamp).toISOString(),
        })),
      ),
    };
  }

  /** BullMQ prints connection errors no listener takes to the console; they belong in the log. */
  private logErrors<T extends Queue | Worker>(emitter: T, queue: string): T {
    (emitter as Queue).on('error', (error: Error) => this.options.logger.warn({ err: error, queue }, 'job queue redis error'));
    return emitter;
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((worker) => worker.close()));
    await Promise.all(Object.values(this.queues).map((queue) => queue.close()));
  }
}
