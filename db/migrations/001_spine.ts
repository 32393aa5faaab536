import type { Knex } from 'knex';

/** Case-sensitive, byte-exact comparison of names on MariaDB (nopad: 'a' and 'a ' differ); SQLite already compares that way. */
function mysqlBinary(knex: Knex, table: Knex.CreateTableBuilder): void {
  if (knex.client.config.client === 'mysql2') {
    table.charset('utf8mb4');
    table.collate('utf8mb4_nopad_bin');
  }
}

export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('users', (t) => {
    mysqlBinary(knex, t);
    t.string('id', 36).primary();
    t.string('username', 32).notNullable().unique();
    t.string('password_hash', 255).notNullable();
    t.bigInteger('created_at').notNullable();
  });

  await knex.schema.createTable('refresh_tokens', (t) => {
    mysqlBinary(knex, t);
    t.string('id', 36).primary();
    t.string('user_id', 36).notNullable().references('id').inTable('users').onDelete('CASCADE');
    t.string('family', 36).notNullable().index();
    t.string('token_hash', 64).notNullable();
    t.bigInteger('expires_at').notNullable();
    t.bigInteger('revoked_at').nullable();
    t.bigInteger('created_at').notNullable();
  });

  await knex.schema.createTable('files', (t) => {
    mysqlBinary(knex, t);
    t.bigIncrements('id').primary();
    t.specificType('sha1', 'char(40)').notNullable().unique();
    t.bigInteger('size').notNullable();
    t.string('tier', 8).notNullable();
    t.string('location', 512).notNullable();
    t.string('status', 16).notNullable().index();
    t.bigInteger('created_at').notNullable();
    t.bigInteger('updated_at').notNullable();
  });

  await knex.schema.createTable('folders', (t) => {
    mysqlBinary(knex, t);
    t.string('id', 36).primary();
    t.string('user_id', 36).notNullable().references('id').inTable('users').onDelete('CASCADE');
    t.string('path', 700).notNullable();
    t.string('parent', 700).notNullable();
    t.string('status', 16).notNullable();
    t.bigInteger('created_at').notNullable();
    t.unique(['user_id', 'path']);
    t.index(['user_id', 'parent']);
  });

  await knex.schema.createTable('user_files', (t) => {
    mysqlBinary(knex, t);
    t.string('id', 36).primary();
    t.string('user_id', 36).notNullable().references('id').inTable('users').onDelete('CASCADE');
    t.bigInteger('file_id').unsigned().notNullable().references('id').inTable('files');
    t.string('name', 255).notNullable();
    t.string('folder', 700).notNullable();
    t.bigInteger('size').notNullable();
    t.string('status', 16).notNullable();
    // One available row per (user, folder, name): (folder, name) is too long for one MariaDB key, so its
    // hash is indexed; `live` is 1 while available and NULL once deleted, and NULLs never collide.
    t.specificType('path_key', 'char(40)').notNullable();
    t.tinyint('live').nullable();
    t.bigInteger('created_at').notNullable();
    t.bigInteger('updated_at').notNullable();
    t.index(['user_id', 'folder']);
    t.index(['file_id']);
    t.unique(['user_id', 'path_key', 'live']);
  });
}

export async function down(knex: Knex): Promise<void> {
  for (const table of ['user_files', 'folders', 'files', 'refresh_tokens', 'users']) {
    await knex.schema.dropTableIfExists(table);
  }
}
