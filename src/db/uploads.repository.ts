import type { Knex } from 'knex';
import type { BlobRow } from './blobs.repository.js';
import type { Database } from './database.js';

export type UploadState = 'receiving' | 'verifying' | 'complete' | 'failed';
export type UploadMode = 'chunks' | 'proof';

export interface UploadRow {
  id: string;
  user_id: string;
  name: string;
  folder: string;
  size: number;
  sha1: string | null;
  /** The SHA-1 computed from the received bytes, recorded before completion moves them (see verify). */
  verified_sha1: string | null;
  chunk_size: number;
  chunk_count: number;
  mode: UploadMode;
  state: UploadState;
  file_id: string | null;
  answered: number;
  error_code: string | null;
  challenge_nonce: string | null;
  challenge_ranges: string | null;
  challenge_expires_at: number | null;
  created_at: number;
  updated_at: number;
  expires_at: number;
}

/** Upload sessions live on the primary: every chunk and completion must see the latest state. */
export class UploadsRepository {
  constructor(private readonly db: Database) {}

  async insert(row: UploadRow): Promise<void> {
    await this.db.write(row.user_id, (db) => db('upload_sessions').insert(row));
  }

  async find(userId: string, id: string): Promise<UploadRow | undefined> {
    const row = await this.db.readPrimary((db) => db<UploadRow>('upload_sessions').where({ id, user_id: userId }).first());
    return row && normalize(row);
  }

  /**
   * The session and the stored content of its sha1 (if any) in one round trip: the instant-upload proof
   * path counts round trips.
   */
  async findWithContent(userId: string, id: string): Promise<{ session: UploadRow; content?: BlobRow } | undefined> {
    const row = await this.db.readPrimary((db) =>
      db('upload_sessions as s')
        .leftJoin('files as f', 'f.sha1', 's.sha1')
        .where({ 's.id': id, 's.user_id': userId })
        .first('s.*', ...CONTENT_COLUMNS.map((column) => `f.${column} as content_${column}`)),
    );
    if (!row) return undefined;
    const session = Object.fromEntries(Object.entries(row).filter(([key]) => !key.startsWith('content_'))) as unknown as UploadRow;
    const content =
      row.content_id === null ? undefined : (Object.fromEntries(CONTENT_COLUMNS.map((column) => [column, row[`content_${column}`]])) as unknown as BlobRow);
    return { session: normalize(session), content };
  }

  /** The open session of this user for the same content and destination, if any. */
  async findOpen(userId: string, fields: { sha1: string; folder: string; name: string; size: number }, now: number) {
    const row = await this.db.readPrimary((db) =>
      db<UploadRow>('upload_sessions')
        .where({ user_id: userId, ...fields })
        .whereIn('state', ['receiving', 'verifying'])
        .where('expires_at', '>', now)
        .orderBy('created_at', 'desc')
        .first(),
    );
    return row && normalize(row);
  }

  /** Applies `change` only while the session is in one of `fromStates`; false when it was not. */
  async transition(id: string, fromStates: UploadState[], change: Partial<UploadRow>): Promise<boolean> {
    const changed = await this.db.write(null, (db) =>
      db('upload_sessions').where({ id }).whereIn('state', fromStates).update({ ...change, updated_at: Date.now() }),
    );
    return changed === 1;
  }

  /**
   * receiving → verifying, only while the session is live: false when a cancel (or expiry) or another
   * complete, on any API process, came first.
   */
  async startVerifying(id: string, now: number): Promise<boolean> {
    const changed = await this.db.write(null, (db) =>
      db('upload_sessions').where({ id, state: 'receiving' }).where('expires_at', '>', now).update({ state: 'verifying', updated_at: now }),
    );
    return changed === 1;
  }

  /**
   * Ends a live session now (every request for it then finds it expired, and the expiry clean-up finishes
   * the removal should the canceller die), unless it is verifying; false when it was not ended.
   */
  async endUnlessVerifying(id: string, now: number): Promise<boolean> {
    const changed = await this.db.write(null, (db) =>
      db('upload_sessions').where({ id }).whereNot('state', 'verifying').where('expires_at', '>', now).update({ expires_at: now, updated_at: now }),
    );
    return changed === 1;
  }

  /** Records that the completed upload was reported; true for exactly one caller. */
  async markAnswered(id: string): Promise<boolean> {
    const changed = await this.db.write(null, (db) => db('upload_sessions').where({ id, answered: 0 }).update({ answered: 1, updated_at: Date.now() }));
    return changed === 1;
  }

  async update(id: string, change: Partial<UploadRow>): Promise<void> {
    await this.db.write(null, (db) => db('upload_sessions').where({ id }).update({ ...change, updated_at: Date.now() }));
  }

  /** Inside the linking transaction: completes a proof session if its challenge is still `nonce`. */
  async completeByProof(trx: Knex, id: string, nonce: string, fileId: string): Promise<boolean> {
    const changed = await trx('upload_sessions')
      .where({ id, challenge_nonce: nonce })
      .update({ challenge_nonce: null, state: 'complete', file_id: fileId, answered: 1, updated_at: Date.now() });
    return changed === 1;
  }

  /**
   * Ends a proof session whose right answer could not be linked (`errorCode`, e.g. its name was taken)
   * if its challenge is still `nonce`: the challenge is used up with it. True for exactly one caller.
   */
  async failByProof(id: string, nonce: string, errorCode: string): Promise<boolean> {
    const changed = await this.db.write(null, (db) =>
      db('upload_sessions')
        .where({ id, challenge_nonce: nonce, state: 'receiving' })
        .update({ challenge_nonce: null, state: 'failed', error_code: errorCode, updated_at: Date.now() }),
    );
    return changed === 1;
  }

  /** Which of these sessions have a row, in any state (read on the primary, by primary key). */
  async existing(ids: string[]): Promise<Set<string>> {
    const rows: Array<{ id: string }> = await this.db.readPrimary((db) => db('upload_sessions').whereIn('id', ids).select('id'));
    return new Set(rows.map((row) => row.id));
  }

  async remove(id: string): Promise<void> {
    await this.db.write(null, (db) => db('upload_sessions').where({ id }).delete());
  }

  async listExpired(now: number, limit: number): Promise<UploadRow[]> {
    const rows = await this.db.readPrimary((db) => db<UploadRow>('upload_sessions').where('expires_at', '<=', now).limit(limit));
    return rows.map(normalize);
  }
}

const CONTENT_COLUMNS: Array<keyof BlobRow> = ['id', 'sha1', 'size', 'tier', 'location', 'status', 'created_at', 'updated_at', 'verified_at'];

/** mysql2 and better-sqlite3 agree on strings; BIGINT columns come back as numbers or strings. */
function normalize(row: UploadRow): UploadRow {
  return {
    ...row,
    size: Number(row.size),
    created_at: Number(row.created_at),
    updated_at: Number(row.updated_at),
    expires_at: Number(row.expires_at),
    challenge_expires_at: row.challenge_expires_at === null ? null : Number(row.challenge_expires_at),
  };
}
