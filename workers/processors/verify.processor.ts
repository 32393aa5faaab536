import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { BlobsRepository } from '../../src/db/blobs.repository.js';
import type { Database } from '../../src/db/database.js';
import type { ContentStore } from '../../src/files/content-store.js';
import type { JobQueue, JobPayloads } from '../../src/jobs/job-queue.js';

export interface VerifyDeps {
  db: Database;
  blobs: BlobsRepository;
  content: ContentStore;
  jobs: JobQueue;
  /** Blobs verified longer ago than this are due again. */
  intervalMs: number;
  logger: Logger;
}

const SWEEP_BATCH = 500;

/**
 * Re-hashes a blob on its tier and marks it corrupt when the bytes no longer match its sha1 (a corrupt
 * file is never served nor instant-linked). A sweep job queues every blob whose last check is due.
 */
export function verifyProcessor({ db, blobs, content, jobs, intervalMs, logger }: VerifyDeps) {
  return async (payload: JobPayloads['verify']): Promise<void> => {
    if ('sweep' in payload) {
      for (const fileId of await blobs.listVerifyDue(Date.now() - intervalMs, SWEEP_BATCH)) {
        await jobs.enqueue('verify', { fileId }, { key: `verify:${fileId}` });
      }
      return;
    }
    const row = await db.readPrimary((knex) => knex('files').where({ id: payload.fileId }).first());
    if (!row || row.status !== 'available') return;
    const hash = createHash('sha1');
    for await (const piece of await content.read(row)) hash.update(piece as Buffer);
    const actual = hash.digest('hex');
    if (actual === row.sha1) {
      await blobs.markVerified(row.id, row.location, Date.now());
      return;
    }
    if (await blobs.markCorrupt(row.id, row.location, Date.now())) {
      logger.error({ event: 'blob_corrupt', fileId: row.id, tier: row.tier, location: row.location, expected: row.sha1, actual }, 'stored bytes no longer match their sha1; file marked corrupt');
    }
  };
}
