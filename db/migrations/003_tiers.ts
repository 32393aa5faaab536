import type { Knex } from 'knex';

export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('files', (t) => {
    t.bigInteger('verified_at').nullable();
  });

  // The embedded profile's job queue (the cluster profile's lives in Redis through BullMQ).
  await knex.schema.createTable('jobs', (t) => {
    t.bigIncrements('id').primary();
    t.string('queue', 32).notNullable();
    // a job with a key is enqueued at most once while it waits, as BullMQ does with a jobId
    t.string('job_key', 128).nullable().unique();
    t.text('payload').notNullable();
    t.string('state', 16).notNullable();
    t.integer('attempts').notNullable().defaultTo(0);
    t.bigInteger('run_at').notNullable();
    t.text('error').nullable();
    t.bigInteger('failed_at').nullable();
    t.bigInteger('created_at').notNullable();
    t.index(['state', 'run_at']);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('jobs');
  await knex.schema.alterTable('files', (t) => {
    t.dropColumn('verified_at');
  });
}
