import { UploadsRepository } from '../../src/db/uploads.repository.js';
import type { Services } from '../../src/wiring.js';
import type { Processors } from '../../src/jobs/job-queue.js';
import { gcProcessor } from './gc.processor.js';
import { orphanSweep } from './orphan-sweep.js';
import { transferProcessor } from './transfer.processor.js';
import { transferSweep } from './transfer-sweep.js';
import { verifyProcessor } from './verify.processor.js';

/** The processors of every queue, built from the same services the API uses; both profiles share them. */
export function buildProcessors(services: Services): Processors {
  const { config, logger, db, blobs, content, jobs, local, s3, uploads, tus } = services;
  return {
    transfer: s3
      ? transferProcessor({ db, blobs, local, s3, logger })
      : async () => {
          logger.warn('transfer job without an S3 tier (embedded profile): nothing to do');
        },
    verify: verifyProcessor({ db, blobs, content, jobs, intervalMs: config.VERIFY_INTERVAL_SECONDS * 1000, logger }),
    gc: gcProcessor({
      blobs,
      tiers: { local, s3 },
      collectExpiredUploads: async () => (await uploads.collectExpired()) + (await tus.collectExpired()),
      sweepOrphans: orphanSweep({
        dataDir: config.DATA_DIR, local, blobs, sessions: new UploadsRepository(db), graceMs: config.GC_ORPHAN_GRACE_SECONDS * 1000, logger,
      }),
      requeueTransfers: s3 ? transferSweep({ blobs, jobs, ageMs: config.TRANSFER_RETRY_AFTER_SECONDS * 1000, logger }) : undefined,
      graceMs: config.GC_GRACE_SECONDS * 1000,
      abandonedUploadMs: config.S3_ABANDONED_UPLOAD_SECONDS * 1000,
      logger,
    }),
  };
}
