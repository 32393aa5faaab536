import type { Database } from './database.js';

export interface UserRow {
  id: string;
  username: string;
  password_hash: string;
  created_at: number;
}

export class UsersRepository {
  constructor(private readonly db: Database) {}

  async create(user: UserRow): Promise<void> {
    await this.db.write(user.id, (db) => db('users').insert(user));
  }

  /** Reads the primary: a login right after registering must find the user. */
  findByUsername(username: string): Promise<UserRow | undefined> {
    return this.db.readPrimary((db) => db<UserRow>('users').where({ username }).first());
  }

  findById(id: string): Promise<UserRow | undefined> {
    return this.db.read(id, (db) => db<UserRow>('users').where({ id }).first());
  }

  /** Reads the primary: a token used right after registering, on another API process, must find its user. */
  async exists(id: string): Promise<boolean> {
    return (await this.db.readPrimary((db) => db('users').where({ id }).first('id'))) !== undefined;
  }

  /** The first registered user, an admin by definition. */
  async firstUserId(): Promise<string | undefined> {
    const row = await this.db.readPrimary((db) => db('users').orderBy('created_at').orderBy('id').first('id'));
    return row?.id;
  }
}
