import { createHash } from 'node:crypto';
import type { Knex } from 'knex';
import type { Database } from './database.js';

export interface UserFileRow {
  id: string;
  user_id: string;
  file_id: number;
  name: string;
  folder: string;
  size: number;
  status: 'available' | 'deleted';
  path_key: string;
  live: 1 | null;
  created_at: number;
  updated_at: number;
}

/** A user's file joined with its content's sha1, tier and location. */
export interface UserFileWithBlob extends UserFileRow {
  sha1: string;
  tier: 'local' | 's3';
  location: string;
  blob_status: 'available' | 'deleting' | 'corrupt' | 'pending';
}

export function pathKey(folder: string, name: string): string {
  return createHash('sha1').update(folder).update('\0').update(name).digest('hex');
}

/** SQL condition "column is `path` or lies below it", without LIKE (names may hold % and _). */
export function underPath(query: Knex.QueryBuilder, column: string, path: string): Knex.QueryBuilder {
  const prefix = path + '/';
  return query.where((q) =>
    q.where(column, path).orWhereRaw('substr(??, 1, ?) = ?', [column, [...prefix].length, prefix]),
  );
}

export class UserFilesRepository {
  constructor(private readonly db: Database) {}

  async insert(trx: Knex, row: UserFileRow): Promise<void> {
    await trx('user_files').insert(row);
  }

  /**
   * The user's available file with its content. `onPrimary` reads past a lagging replica: for a caller
   * that just found the replica's answer out of date (content moved between tiers since).
   */
  findAvailable(userId: string, id: string, { onPrimary = false } = {}): Promise<UserFileWithBlob | undefined> {
    const query = (db: Knex) => withBlob(db).where({ 'uf.id': id, 'uf.user_id': userId, 'uf.status': 'available' }).first();
    return onPrimary ? this.db.readPrimary(query) : this.db.read(userId, query);
  }

  findByPath(trx: Knex, userId: string, folder: string, name: string): Promise<UserFileWithBlob | undefined> {
    return withBlob(trx).where({ 'uf.user_id': userId, 'uf.path_key': pathKey(folder, name), 'uf.live': 1 }).first();
  }

  listFolder(userId: string, folder: string): Promise<UserFileWithBlob[]> {
    return this.db.read(userId, (db) =>
      withBlob(db).where({ 'uf.user_id': userId, 'uf.folder': folder, 'uf.status': 'available' }).orderBy('uf.name'),
    );
  }

  async rename(trx: Knex, userId: string, id: string, folder: string, name: string, now: number): Promise<void> {
    await trx('user_files')
      .where({ id, user_id: userId })
      .update({ folder, name, path_key: pathKey(folder, name), updated_at: now });
  }

  async softDelete(userId: string, id: string, now: number): Promise<boolean> {
    const changed = await this.db.write(userId, (db) =>
      db('user_files').where({ id, user_id: userId, status: 'available' }).update({ status: 'deleted', live: null, updated_at: now }),
    );
    return changed === 1;
  }

  async softDeleteUnder(trx: Knex, userId: string, folder: string, now: number): Promise<void> {
    await underPath(trx('user_files').where({ user_id: userId, status: 'available' }), 'folder', folder).update({
      status: 'deleted',
      live: null,
      updated_at: now,
    });
  }

  /** Whether the user has an available file of this content (by its sha1: whether or not it is stored). */
  async ownsContent(userId: string, sha1: string): Promise<boolean> {
    const row = await this.db.readPrimary((db) =>
      db('user_files')
        .join('files', 'files.id', 'user_files.file_id')
        .where({ 'user_files.user_id': userId, 'user_files.status': 'available', 'files.sha1': sha1 })
        .first('user_files.id'),
    );
    return row !== undefined;
  }

  async usedBytes(userId: string): Promise<number> {
    const row = await this.db.read(userId, (db) =>
      db('user_files').where({ user_id: userId, status: 'available' }).sum({ total: 'size' }).first(),
    );
    return Number(row?.total ?? 0);
  }
}

function withBlob(db: Knex): Knex.QueryBuilder {
  return db('user_files as uf')
    .join('files as f', 'f.id', 'uf.file_id')
    .select('uf.*', 'f.sha1', 'f.tier', 'f.location', 'f.status as blob_status');
}
