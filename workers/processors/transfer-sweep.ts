import type { Logger } from 'pino';
import type { BlobsRepository } from '../../src/db/blobs.repository.js';
import { enqueueTransfer, type JobQueue } from '../../src/jobs/job-queue.js';

export interface TransferSweepDeps {
  blobs: BlobsRepository;
  jobs: JobQueue;
  /** A blob created longer ago than this and still local has lost its transfer (TRANSFER_RETRY_AFTER_SECONDS). */
  ageMs: number;
  logger: Logger;
}

const BATCH = 500;

/**
 * Queues a transfer again for every available blob still on the local tier well after it landed. Its
 * only other enqueue is at landing (or revive), so a transfer that failed for good (attempts or stalls
 * exhausted while RGW was down, say), or one dropped because the same row's job was running, would
 * leave the blob local forever. It uses the landing's enqueue (enqueueTransfer), so a transfer still
 * waiting or running is not queued twice, and one that failed is replaced. Returns how many were queued.
 */
export function transferSweep({ blobs, jobs, ageMs, logger }: TransferSweepDeps) {
  return async (): Promise<number> => {
    const before = Date.now() - ageMs;
    let queued = 0;
    for (let afterId = 0; ;) {
      const ids = await blobs.listLocalSince(before, afterId, BATCH);
      for (const fileId of ids) await enqueueTransfer(jobs, fileId);
      queued += ids.length;
      if (ids.length < BATCH) break;
      afterId = ids[ids.length - 1]!;
    }
    if (queued > 0) logger.info({ queued }, 'transfers queued again for blobs still local');
    return queued;
  };
}
