/** The queues and their payloads: shared by both adapters and by the processors in workers/. */
export interface JobPayloads {
  /** Move a local blob into the S3 tier. */
  transfer: { fileId: number };
  /** Re-hash a blob (fileId), or enqueue verification of blobs not verified for a while (sweep). */
  verify: { fileId: number } | { sweep: true };
  /** Collect unreferenced blobs and expired upload sessions. */
  gc: Record<string, never>;
}

export type QueueName = keyof JobPayloads;
export const QUEUE_NAMES: QueueName[] = ['transfer', 'verify', 'gc'];

export type Processors = { [Q in QueueName]: (payload: JobPayloads[Q]) => Promise<void> };

export interface FailedJob {
  id: string;
  queue: QueueName;
  attempts: number;
  error: string;
  failedAt: string;
}

export interface QueueStats {
  queues: Record<QueueName, { waiting: number; active: number; failed: number }>;
  failed: FailedJob[];
}

export interface EnqueueOptions {
  /** Deduplicates: a job with the same key is not enqueued again while one waits or runs. */
  key?: string;
}

/** A job observed by the processing side, for metrics. */
export type JobEvent = { queue: QueueName; seconds: number; outcome: 'completed' | 'failed' };

/**
 * Durable background jobs: BullMQ on Redis in the cluster profile, SQLite rows polled in-process in the
 * embedded profile. Failed jobs retry with exponential backoff and then stay in a failed set.
 */
export interface JobQueue {
  enqueue<Q extends QueueName>(queue: Q, payload: JobPayloads[Q], options?: EnqueueOptions): Promise<void>;
  /** Runs `queue` with `payload` every `everyMs` (idempotent: one schedule per queue). */
  schedule<Q extends QueueName>(queue: Q, payload: JobPayloads[Q], everyMs: number): Promise<void>;
  /** Starts consuming; `onJob` observes each finished attempt. */
  process(processors: Processors, onJob?: (event: JobEvent) => void): Promise<void>;
  stats(): Promise<QueueStats>;
  close(): Promise<void>;
}

export const JOB_ATTEMPTS = 5;
export const BACKOFF_BASE_MS = 1000;

/**
 * Queues the move of blob `fileId` to S3, under the one key every enqueuer of it uses (landing, revive,
 * gc's sweep): a transfer still waiting or running is not queued twice, and one that failed is replaced.
 */
export function enqueueTransfer(jobs: JobQueue, fileId: number): Promise<void> {
  return jobs.enqueue('transfer', { fileId }, { key: `transfer:${fileId}` });
}
