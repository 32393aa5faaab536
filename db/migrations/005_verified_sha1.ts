import type { Knex } from 'knex';

// The SHA-1 the server computed from a session's staged bytes, written before completion moves them out
// of the staged file: a complete after a crash past that point finds the bytes by it (stored content, or
// a blob file that has no row yet), where re-hashing the staged file would find nothing.
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('upload_sessions', (t) => {
    t.specificType('verified_sha1', 'char(40)').nullable();
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('upload_sessions', (t) => {
    t.dropColumn('verified_sha1');
  });
}
