import type { Database } from './database.js';

export interface RefreshTokenRow {
  id: string;
  user_id: string;
  family: string;
  token_hash: string;
  expires_at: number;
  revoked_at: number | null;
  created_at: number;
}

/** Refresh tokens always live on the primary: a revocation must be seen at once. */
export class TokensRepository {
  constructor(private readonly db: Database) {}

  async insert(token: RefreshTokenRow): Promise<void> {
    await this.db.write(token.user_id, (db) => db('refresh_tokens').insert(token));
  }

  findById(id: string): Promise<RefreshTokenRow | undefined> {
    return this.db.readPrimary((db) => db<RefreshTokenRow>('refresh_tokens').where({ id }).first());
  }

  /** Revokes one token if it is still active; false means someone else already used it. */
  async revokeIfActive(id: string, now: number): Promise<boolean> {
    const changed = await this.db.write(null, (db) =>
      db('refresh_tokens').where({ id }).whereNull('revoked_at').update({ revoked_at: now }),
    );
    return changed === 1;
  }

  async revokeFamily(family: string, now: number): Promise<void> {
    await this.db.write(null, (db) => db('refresh_tokens').where({ family }).whereNull('revoked_at').update({ revoked_at: now }));
  }
}
