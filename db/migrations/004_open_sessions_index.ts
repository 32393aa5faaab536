import type { Knex } from 'knex';

// Looking for a user's open session of some content (POST /api/uploads, the instant-upload path)
// must not walk every finished session of that content, which stay until they expire.
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('upload_sessions', (t) => {
    t.index(['user_id', 'sha1', 'state'], 'upload_sessions_open_by_content');
    t.dropIndex(['user_id', 'sha1']);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('upload_sessions', (t) => {
    t.index(['user_id', 'sha1']);
    t.dropIndex(['user_id', 'sha1', 'state'], 'upload_sessions_open_by_content');
  });
}
