import type { Knex } from 'knex';
import type { Database } from './database.js';

export type Tier = 'local' | 's3';
export type BlobStatus = 'pending' | 'available' | 'deleting';

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
}

export class BlobsRepository {
  constructor(private readonly db: Database) {}

  findBySha1(trx: Knex, sha1: string): Promise<BlobRow | undefined> {
    return trx<BlobRow>('files').where({ sha1 }).first();
  }

  findById(userId: string, id: number): Promise<BlobRow | undefined> {
    return this.db.read(userId, (db) => db<BlobRow>('files').where({ id }).first());
  }

  /** Inserts the content row; on a concurrent insert of the same sha1 the unique key answers. */
  async insert(trx: Knex, blob: Omit<BlobRow, 'id'>): Promise<number> {
    const [id] = await trx('files').insert(blob);
    return Number(id);
  }

  async markAvailable(trx: Knex, id: number, tier: Tier, location: string, now: number): Promise<void> {
    await trx('files').where({ id }).update({ status: 'available', tier, location, updated_at: now });
  }
}
