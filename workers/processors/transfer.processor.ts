import type { Logger } from 'pino';
import type { BlobsRepository } from '../../src/db/blobs.repository.js';
import type { Database } from '../../src/db/database.js';
import type { ArchiveStore, LandingStore } from '../../src/storage/blob-store.js';

export interface TransferDeps {
  db: Database;
  blobs: BlobsRepository;
  local: LandingStore;
  s3: ArchiveStore;
  logger: Logger;
}

/**
 * Moves one local blob into S3: upload (multipart, streamed from disk) and verify, then switch the row
 * to the S3 copy in one transaction on the primary, and only then delete the local file. Running it
 * twice, or after a crash at any step, ends in the same state. A kill between the switch and the delete
 * leaves a local file the retry cannot name (the row now holds the S3 key): no row points at it, so gc's
 * orphan sweep removes it.
 *
 * The key is the landing's own: a row revived (after corruption, or during its collection) lands again
 * under the same id, and a delete still under way for its previous incarnation (gc's collection, that
 * incarnation's transfer finding the row changed) must not hit the new object. A retry of this same
 * landing writes the same key again, so a copy left by a kill before the switch is overwritten, not leaked.
 */
export function transferProcessor({ db, blobs, local, s3, logger }: TransferDeps) {
  return async ({ fileId }: { fileId: number }): Promise<void> => {
    const row = await db.readPrimary((knex) => knex('files').where({ id: fileId }).first());
    if (!row || row.status !== 'available' || row.tier !== 'local') return;
    const size = Number(row.size);
    const key = `blobs/${row.sha1}/${row.id}.${local.landingTag(row.location)}`;
    const started = Date.now();
    /** Removes our object unless a twin of this landing's job switched the row to it. */
    const removeUnlessLive = async () => {
      const now = await db.readPrimary((knex) => knex('files').where({ id: fileId }).first());
      if (now?.location !== key) await s3.remove(key);
    };
    try {
      await s3.store(local.pathOf(row.location), key, { size, sha1: row.sha1 });
    } catch (error) {
      // A copy that failed its check (the local bytes changed, the gateway stored other bytes) is no one's,
      // and no later job writes this landing's key again once verify has marked the row corrupt: it would
      // stay in the bucket for good. With the gateway out of reach, the retry overwrites it instead.
      await removeUnlessLive().catch(() => undefined);
      throw error;
    }
    if (await blobs.switchToArchive(row.id, row.location, key, Date.now())) {
      await local.remove(row.location);
      logger.info({ fileId, size, ms: Date.now() - started }, 'blob moved to s3');
      return;
    }
    // The row changed while we copied (collected, revived, or moved by a twin job): our object is no one's.
    await removeUnlessLive();
  };
}
