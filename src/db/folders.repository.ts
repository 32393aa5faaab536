import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import { underPath } from './user-files.repository.js';
import type { Database } from './database.js';

export interface FolderRow {
  id: string;
  user_id: string;
  path: string;
  parent: string;
  status: 'available' | 'deleted';
  created_at: number;
}

export class FoldersRepository {
  constructor(private readonly db: Database) {}

  /** Makes each folder of `chain` (parents first) exist and be available. */
  async ensure(trx: Knex, userId: string, chain: Array<{ path: string; parent: string }>, now: number): Promise<void> {
    if (chain.length === 0) return;
    // one statement for the whole chain: a link into /a/b/c is one round trip, not three
    await trx('folders')
      .insert(chain.map(({ path, parent }) => ({ id: randomUUID(), user_id: userId, path, parent, status: 'available', created_at: now })))
      .onConflict(['user_id', 'path'])
      .merge({ status: 'available' });
  }

  async exists(userId: string, path: string): Promise<boolean> {
    const row = await this.db.read(userId, (db) =>
      db('folders').where({ user_id: userId, path, status: 'available' }).first('id'),
    );
    return row !== undefined;
  }

  listChildren(userId: string, parent: string): Promise<FolderRow[]> {
    return this.db.read(userId, (db) =>
      db<FolderRow>('folders').where({ user_id: userId, parent, status: 'available' }).orderBy('path'),
    );
  }

  /** Soft-deletes the folder and all below it; false when it did not exist. */
  async softDeleteUnder(trx: Knex, userId: string, path: string): Promise<boolean> {
    const changed = await underPath(trx('folders').where({ user_id: userId, status: 'available' }), 'path', path).update({
      status: 'deleted',
    });
    return changed > 0;
  }
}
