import type { Knex } from 'knex';

// The transfer sweep asks, every gc run, for the available rows still on the local tier in id order:
// few of them in a steady state, so without this index each run read every row of `files`.
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('files', (t) => {
    t.index(['tier', 'status', 'id'], 'files_by_tier');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('files', (t) => {
    t.dropIndex(['tier', 'status', 'id'], 'files_by_tier');
  });
}
