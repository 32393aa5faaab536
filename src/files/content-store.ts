import type { BlobRow, BlobsRepository, Tier } from '../db/blobs.repository.js';
import { isDeadlock, isUniqueViolation, type Database } from '../db/database.js';
import { AppError } from '../errors.js';
import type { ArchiveStore, ByteRange, LandingStore } from '../storage/blob-store.js';
import type { HashedTempFile } from '../storage/temp-file.js';

export interface ContentStoreDeps {
  db: Database;
  blobs: BlobsRepository;
  landing: LandingStore;
  tiers: { local: LandingStore; s3?: ArchiveStore };
  /** Called for each blob that newly landed (the cluster profile queues its move to S3). */
  onLanded?: (fileId: number) => Promise<void>;
}

/**
 * The unique-file side of storage: one `files` row and one blob per content. New bytes land on the
 * landing tier; content marked corrupt or being collected is revived with the fresh bytes.
 */
export class ContentStore {
  constructor(private readonly deps: ContentStoreDeps) {}

  findBySha1(sha1: string): Promise<BlobRow | undefined> {
    return this.deps.db.readPrimary((db) => this.deps.blobs.findBySha1(db, sha1));
  }

  /**
   * Makes `temp` the stored bytes of its sha1 and returns the row id: inserts a new row, or revives one
   * that is not available (corrupt, or being collected). Each statement commits on its own, so a
   * concurrent upload of the same content is seen as soon as its insert wins the unique key.
   */
  async storeNew(temp: HashedTempFile): Promise<number> {
    return this.keep(await this.deps.landing.adopt(temp.path, temp.sha1), temp);
  }

  /**
   * Makes a blob of `sha1` already on the landing tier, with no row pointing at it yet (its completion
   * was killed after adopting it), the stored bytes of that sha1, if `matches` confirms its bytes; returns
   * the row id, or undefined when no such blob holds them.
   */
  async keepAdopted(sha1: string, size: number, matches: (filePath: string) => Promise<boolean>): Promise<number | undefined> {
    const { landing } = this.deps;
    // a row's own file, even one gc is collecting, is never taken: only a file no row points at
    const owned = (await this.findBySha1(sha1))?.location;
    for (const { location, size: found } of await landing.findAdopted(sha1)) {
      if (location === owned || found !== size) continue;
      // Moved to a name of its own before it is hashed: the move gives it a fresh ctime, which keeps
      // the orphan sweep off it, and if the sweep (or another recovery) got there first, the move fails
      // and the file is simply not a candidate.
      const claimed = await landing.adopt(landing.pathOf(location), sha1).catch(() => null);
      if (!claimed) continue;
      if (await matches(landing.pathOf(claimed))) return this.keep(claimed, { sha1, size });
      await landing.remove(claimed);
    }
    return undefined;
  }

  private async keep(location: string, { sha1, size }: { sha1: string; size: number }): Promise<number> {
    const { db, blobs, landing } = this.deps;
    const now = Date.now();
    for (let attempt = 0; attempt < 3; attempt++) {
      const existing = await this.findBySha1(sha1);
      if (existing?.status === 'available') {
        // keepAdopted may have made this very file the stored copy (another completion adopted it): it stays
        if (existing.location === location) return existing.id;
        // The row's own file may be the one this recovery claimed: a store adopts its file before it
        // inserts its row, and a recovery of the same content in between takes it for an orphan (as a
        // second recovery takes the first's). Then this file is the row's bytes, not a duplicate.
        const healed = existing.tier === landing.tier && !(await landing.holds(existing.location)) &&
          (await db.write(null, (knex) => blobs.relocate(knex, existing.id, existing.location, location, now)));
        if (!healed) await landing.remove(location);
        return existing.id;
      }
      if (existing) {
        const revived = await db.write(null, (knex) => blobs.revive(knex, existing, landing.tier, location, now)).catch((error: unknown) => {
          // a collection forgetting this row holds it: look again once it is done
          if (isDeadlock(error)) return false;
          throw error;
        });
        if (!revived) continue;
        // the old bytes failed verification or were being collected: they are no one's now (unless
        // keepAdopted found them hashing right after all, and revived the row with them)
        if (existing.location !== location) await this.deps.tiers[existing.tier]?.remove(existing.location).catch(() => undefined);
        await this.deps.onLanded?.(existing.id);
        return existing.id;
      }
      try {
        const id = await db.write(null, (knex) =>
          blobs.insert(knex, { sha1, size, tier: landing.tier, location, status: 'available', created_at: now, updated_at: now, verified_at: now }),
        );
        await this.deps.onLanded?.(id);
        return id;
      } catch (error) {
        if (!isUniqueViolation(error)) throw error;
        // a concurrent upload of the same content committed first: look again
      }
    }
    await landing.remove(location);
    throw new AppError('unavailable', 'The content is changing state; please retry.');
  }

  /** Small ranges of a stored content's bytes (a proof's challenge), from whichever tier holds it. */
  async readRanges(blob: { tier: Tier; location: string }, ranges: ByteRange[]): Promise<Buffer[]> {
    return this.storeOf(blob).readRanges(blob.location, ranges);
  }

  /** A presigned URL valid ≤ 15 minutes for content in S3, or null (local tier, or no public endpoint). */
  async presign(blob: { tier: Tier; location: string }, contentDisposition: string): Promise<string | null> {
    if (blob.tier !== 's3' || !this.deps.tiers.s3) return null;
    return this.deps.tiers.s3.presign(blob.location, { expiresInSeconds: 900, contentDisposition });
  }

  async read(blob: { tier: Tier; location: string }, range?: ByteRange) {
    return this.storeOf(blob).read(blob.location, range);
  }

  /** The stored size, from whichever tier holds the content, without touching its bytes. */
  async stat(blob: { tier: Tier; location: string }) {
    return this.storeOf(blob).stat(blob.location);
  }

  private storeOf(blob: { tier: Tier }) {
    const store = this.deps.tiers[blob.tier];
    if (!store) throw new AppError('storage_unavailable', `The ${blob.tier} tier is not configured here.`);
    return store;
  }
}
