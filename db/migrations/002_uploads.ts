import type { Knex } from 'knex';

export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('upload_sessions', (t) => {
    if (knex.client.config.client === 'mysql2') {
      t.charset('utf8mb4');
      t.collate('utf8mb4_nopad_bin');
    }
    t.string('id', 36).primary();
    t.string('user_id', 36).notNullable().references('id').inTable('users').onDelete('CASCADE');
    t.string('name', 255).notNullable();
    t.string('folder', 700).notNullable();
    t.bigInteger('size').notNullable();
    t.specificType('sha1', 'char(40)').nullable();
    t.integer('chunk_size').notNullable();
    t.integer('chunk_count').notNullable();
    t.string('mode', 8).notNullable();
    t.string('state', 16).notNullable();
    // the user_files row made at completion; `answered` tells a repeated complete to say 200, not 201
    t.string('file_id', 36).nullable();
    t.tinyint('answered').notNullable().defaultTo(0);
    // why a failed session failed (hash_mismatch, name_conflict): complete keeps answering with it
    t.string('error_code', 32).nullable();
    t.string('challenge_nonce', 32).nullable();
    t.text('challenge_ranges').nullable();
    t.bigInteger('challenge_expires_at').nullable();
    t.bigInteger('created_at').notNullable();
    t.bigInteger('updated_at').notNullable();
    t.bigInteger('expires_at').notNullable().index();
    t.index(['user_id', 'sha1']);
  });

  // The embedded profile's chunk bitmap (the cluster profile keeps it in Redis).
  await knex.schema.createTable('upload_chunks', (t) => {
    t.string('upload_id', 36).notNullable();
    t.integer('chunk_index').notNullable();
    t.primary(['upload_id', 'chunk_index']);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('upload_chunks');
  await knex.schema.dropTableIfExists('upload_sessions');
}
