import type { Knex } from 'knex';
import type { Database } from './database.js';

export type Tier = 'local' | 's3';
export type BlobStatus = 'pending' | 'available' | 'deleting' | 'corrupt';

/** A row of `files`: one stored content, whoever owns it. */
export interface BlobRow {
  id: number;
  sha1: string;
  size: number;
  tier: Tier;
  location: string;
  status: BlobStatus;
  created_at: number;
  updated_at: number;
  /** When the stored bytes were last proven to match sha1 (hashed as they landed, moved, or re-verified). */
  verified_at: number | null;
}

export class BlobsRepository {
  constructor(private readonly db: Database) {}

  findBySha1(trx: Knex, sha1: string): Promise<BlobRow | undefined> {
    return trx<BlobRow>('files').where({ sha1 }).first();
  }

  /** Inserts the content row; on a concurrent insert of the same sha1 the unique key answers. */
  async insert(trx: Knex, blob: Omit<BlobRow, 'id'>): Promise<number> {
    const [id] = await trx('files').insert(blob);
    return Number(id);
  }

  /** Points an available row at another file of its bytes, unless it changed meanwhile; true when it did. */
  async relocate(trx: Knex, id: number, from: string, to: string, now: number): Promise<boolean> {
    const changed = await trx('files').where({ id, location: from, status: 'available' }).update({ location: to, updated_at: now });
    return changed === 1;
  }

  /** Points a row that is not available at fresh bytes, unless it changed meanwhile; true when it did. */
  async revive(trx: Knex, row: BlobRow, tier: Tier, location: string, now: number): Promise<boolean> {
    const changed = await trx('files')
      .where({ id: row.id, status: row.status, location: row.location })
      .update({ status: 'available', tier, location, updated_at: now, verified_at: now });
    return changed === 1;
  }

  /**
   * Inside a linking transaction: true while the content is available, and it stays so until the
   * transaction ends (the row is updated, hence locked), so collection cannot take it from under a link.
   */
  async holdAvailable(trx: Knex, id: number, now: number): Promise<boolean> {
    return (await trx('files').where({ id, status: 'available' }).update({ updated_at: now })) === 1;
  }

  /** Switches a local blob to its S3 copy, unless the row changed meanwhile; true when it switched. */
  async switchToArchive(id: number, fromLocation: string, key: string, now: number): Promise<boolean> {
    const changed = await this.db.transaction(null, (trx) =>
      trx('files').where({ id, tier: 'local', location: fromLocation, status: 'available' }).update({ tier: 's3', location: key, updated_at: now, verified_at: now }),
    );
    return changed === 1;
  }

  async markVerified(id: number, location: string, now: number): Promise<void> {
    await this.db.write(null, (db) => db('files').where({ id, location }).update({ verified_at: now }));
  }

  /** Marks the blob at `location` corrupt, if the row still points there; true when it did. */
  async markCorrupt(id: number, location: string, now: number): Promise<boolean> {
    const changed = await this.db.write(null, (db) =>
      db('files').where({ id, location, status: 'available' }).update({ status: 'corrupt', updated_at: now }),
    );
    return changed === 1;
  }

  /** Available blobs not verified since `before` (oldest first). */
  async listVerifyDue(before: number, limit: number): Promise<number[]> {
    const rows = await this.db.readPrimary((db) =>
      db('files')
        .where({ status: 'available' })
        .where((q) => q.whereNull('verified_at').orWhere('verified_at', '<', before))
        .orderBy('verified_at')
        .limit(limit)
        .select('id'),
    );
    return rows.map((row: { id: number }) => Number(row.id));
  }

  /** Available blobs still on the local tier, created before `before`, by id after `afterId`. */
  async listLocalSince(before: number, afterId: number, limit: number): Promise<number[]> {
    const rows = await this.db.readPrimary((db) =>
      db('files')
        .where({ status: 'available', tier: 'local' })
        .where('created_at', '<', before)
        .where('id', '>', afterId)
        .orderBy('id')
        .limit(limit)
        .select('id'),
    );
    return rows.map((row: { id: number }) => Number(row.id));
  }

  /**
   * Blobs (available, or corrupt: bytes no one can read or link) no available user_files row has
   * referenced since `before`: candidates for collection. The last reference's time is the later of the
   * row's own updated_at (bumped by every link, and by a revive) and the newest deleted user_files row's
   * (when it was deleted). Deleted rows stay until the blob is forgotten, so a revived blob still has its
   * old ones: by those alone it would be collectable at once, before its reviver linked it.
   */
  async listUnreferencedSince(before: number, limit: number): Promise<BlobRow[]> {
    return this.db.readPrimary((db) =>
      unreferencedSince(db, db<BlobRow>('files as f').whereIn('f.status', COLLECTABLE), before).select('f.*').limit(limit),
    );
  }

  /**
   * available or corrupt → deleting, only while the blob is still unreferenced since `before` (a listing
   * may be stale: linked, or collected by another run and revived, since). Checked in one statement, and a
   * link holds the row (holdAvailable) for its whole transaction: a link and a collection of the same
   * content can never both win.
   */
  async markDeleting(id: number, before: number, now: number): Promise<boolean> {
    const changed = await this.db.write(null, (db) =>
      unreferencedSince(db, db('files as f').where('f.id', id).whereIn('f.status', COLLECTABLE), before).update({ status: 'deleting', updated_at: now }),
    );
    return changed === 1;
  }

  /**
   * Where the rows of these sha1s point, whatever their tier or status: a local file whose location is
   * not among them is no row's. Read on the primary (a lagging replica could miss a fresh row); sha1 is
   * the unique key, so a batch costs one index lookup per sha1.
   */
  async locationsOf(sha1s: string[]): Promise<Set<string>> {
    const rows: Array<{ location: string }> = await this.db.readPrimary((db) => db('files').whereIn('sha1', sha1s).select('location'));
    return new Set(rows.map((row) => row.location));
  }

  listDeleting(limit: number): Promise<BlobRow[]> {
    return this.db.readPrimary((db) => db<BlobRow>('files').where({ status: 'deleting' }).limit(limit));
  }

  /** Forgets a collected blob and the deleted user_files rows that pointed at it, unless it was revived. */
  async forgetCollected(row: BlobRow): Promise<void> {
    await this.db.transaction(null, async (trx) => {
      // a locking read: a plain one sees the transaction's snapshot, and would delete a row revived since
      const still = await trx('files').where({ id: row.id, status: 'deleting', location: row.location }).forUpdate().first('id');
      if (!still) return;
      await trx('user_files').where({ file_id: row.id, status: 'deleted' }).delete();
      await trx('files').where({ id: row.id }).delete();
    });
  }
}

/** What gc may collect. A corrupt blob is kept while someone links it (their download answers 409 corrupt). */
const COLLECTABLE: BlobStatus[] = ['available', 'corrupt'];

/** Narrows `query` (over files as f) to blobs neither linked now nor linked, revived or unlinked since `before`. */
function unreferencedSince(db: Knex, query: Knex.QueryBuilder, before: number): Knex.QueryBuilder {
  return query
    .where('f.updated_at', '<', before)
    .whereNotExists((q) =>
      q.select(db.raw('1')).from('user_files as uf').whereRaw('uf.file_id = f.id')
        .where((recent) => recent.where('uf.status', 'available').orWhere('uf.updated_at', '>=', before)),
    );
}
