import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import type { BlobsRepository } from '../../src/db/blobs.repository.js';
import type { UploadsRepository } from '../../src/db/uploads.repository.js';
import type { LocalBlobStore } from '../../src/storage/blob-store.local.js';
import { ignoreMissing, namesIn } from '../../src/storage/missing-files.js';

export interface OrphanSweepDeps {
  dataDir: string;
  local: LocalBlobStore;
  blobs: BlobsRepository;
  sessions: UploadsRepository;
  /** A file whose ctime is older than this is no live upload's (see README, GC_ORPHAN_GRACE_SECONDS). */
  graceMs: number;
  logger: Logger;
}

const BATCH = 500;
// Orphans come only from kills and wait out a grace of hours: walking every blob on each gc run (every
// few minutes) would cost a big store far more than it frees.
const MAX_SWEEP_EVERY_MS = 3600_000;

const UUID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';
const TUS_ID = '[0-9a-f]{32}';
/** Bodies being staged (TempFiles: form uploads, tus PATCHes with Upload-Checksum) and tus uploads being linked (TusEndpoint.link). */
const TEMP_FILE = new RegExp(`^(?:${UUID}|tus-${TUS_ID})$`);
/** TusEndpoint.leaveEmptyPlaceholder's file before its rename over the upload. */
const TUS_PLACEHOLDER = new RegExp(`^${TUS_ID}\\.placeholder$`);
/** UploadStaging's file of a chunked upload session. */
const STAGED_PART = new RegExp(`^(${UUID})\\.part$`);

/**
 * Removes local files that a kill -9 left behind and nothing will ever finish or remove: temp files,
 * tus placeholders, staged parts without a session row, blob files no row points at (adopted just before
 * a kill, or left by a transfer killed between its switch to S3 and its delete). Only once untouched
 * (ctime) for the grace: writes and renames move ctime, so a file still being written, or adopted a
 * moment before its row is inserted, is young. A blob or part file is looked up first and stat'ed only
 * when no row holds it; an old file no row holds never gains one (a row only ever points at a file just
 * adopted, a part is created just before its session). Returns how many files went, 0 when not due.
 */
export function orphanSweep({ dataDir, local, blobs, sessions, graceMs, logger }: OrphanSweepDeps) {
  let lastSweep = 0;
  return async (): Promise<number> => {
    const started = Date.now();
    if (started - lastSweep < Math.min(graceMs, MAX_SWEEP_EVERY_MS)) return 0;
    const untouchedSince = started - graceMs;
    let removed = 0;
    const removeIfUntouched = async (file: string): Promise<void> => {
      const stat = await fsp.lstat(file).catch(ignoreMissing);
      if (!stat?.isFile() || stat.ctimeMs >= untouchedSince) return;
      await fsp.rm(file, { force: true });
      removed += 1;
      logger.info({ file: path.relative(dataDir, file), size: stat.size, untouchedSeconds: Math.round((started - stat.ctimeMs) / 1000) }, 'orphaned local file removed');
    };

    const tmp = path.join(dataDir, 'tmp');
    for (const name of await namesIn(tmp, TEMP_FILE)) await removeIfUntouched(path.join(tmp, name));
    const tus = path.join(dataDir, 'tus');
    for (const name of await namesIn(tus, TUS_PLACEHOLDER)) await removeIfUntouched(path.join(tus, name));
    const staged = path.join(dataDir, 'uploads');
    const ids = (await namesIn(staged, STAGED_PART)).map((name) => STAGED_PART.exec(name)![1]!);
    for (let start = 0; start < ids.length; start += BATCH) {
      const batch = ids.slice(start, start + BATCH);
      const live = await sessions.existing(batch);
      for (const id of batch) if (!live.has(id)) await removeIfUntouched(path.join(staged, `${id}.part`));
    }

    let batch: Array<{ location: string; sha1: string }> = [];
    const sweepBlobs = async () => {
      const pointed = await blobs.locationsOf([...new Set(batch.map((blob) => blob.sha1))]);
      for (const { location } of batch) if (!pointed.has(location)) await removeIfUntouched(local.pathOf(location));
      batch = [];
    };
    for await (const blob of local.stored()) {
      batch.push(blob);
      if (batch.length === BATCH) await sweepBlobs();
    }
    if (batch.length > 0) await sweepBlobs();

    lastSweep = started;
    logger.debug({ removed, ms: Date.now() - started }, 'orphan sweep done');
    return removed;
  };
}
