import type { Logger } from 'pino';
import type { BlobRow, BlobsRepository } from '../../src/db/blobs.repository.js';
import type { ArchiveStore, BlobStore } from '../../src/storage/blob-store.js';

export interface GcDeps {
  blobs: BlobsRepository;
  /** The S3 tier (cluster profile) also has its abandoned multipart uploads aborted. */
  tiers: { local: BlobStore; s3?: ArchiveStore };
  /** Removes expired upload sessions (chunked and tus) with their staged bytes. */
  collectExpiredUploads: () => Promise<number>;
  /** Removes local files a kill left behind (orphanSweep); how many went. */
  sweepOrphans: () => Promise<number>;
  /** Cluster profile: queues a transfer again for blobs left local (transferSweep); how many. */
  requeueTransfers?: () => Promise<number>;
  graceMs: number;
  /** A multipart upload older than this was abandoned by a worker that died mid-transfer. */
  abandonedUploadMs: number;
  logger: Logger;
}

const BATCH = 200;

/**
 * Collects blobs no user has referenced for the grace period (corrupt ones too): → deleting (refused if a link
 * got there first), then the bytes go, then the row. A crash in between leaves a `deleting` row that the
 * next run finishes. Expired upload sessions go too, and the parts of multipart uploads to S3 that a
 * killed worker left behind (its job's retry starts a new upload; the old parts would stay forever), and
 * the local files a kill left behind. In the cluster profile, blobs whose transfer was lost are queued again.
 */
export function gcProcessor({ blobs, tiers, collectExpiredUploads, sweepOrphans, requeueTransfers, graceMs, abandonedUploadMs, logger }: GcDeps) {
  const collect = async (row: BlobRow): Promise<void> => {
    const store = tiers[row.tier];
    if (!store) return;
    await store.remove(row.location);
    await blobs.forgetCollected(row);
  };
  return async (): Promise<void> => {
    const now = Date.now();
    let collected = 0;
    for (const row of await blobs.listUnreferencedSince(now - graceMs, BATCH)) {
      if (await blobs.markDeleting(row.id, now - graceMs, now)) {
        await collect({ ...row, status: 'deleting' });
        collected += 1;
      }
    }
    for (const row of await blobs.listDeleting(BATCH)) await collect(row);
    const uploads = await collectExpiredUploads();
    const abandonedParts = (await tiers.s3?.abortUploadsStartedBefore(now - abandonedUploadMs)) ?? 0;
    const orphans = await sweepOrphans();
    await requeueTransfers?.();
    if (collected > 0 || uploads > 0 || abandonedParts > 0 || orphans > 0) {
      logger.info({ collected, expiredUploads: uploads, abortedMultipartUploads: abandonedParts, orphanedLocalFiles: orphans }, 'garbage collected');
    }
  };
}
