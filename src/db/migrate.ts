import type { Knex } from 'knex';
import { migrations } from '../../db/migrations/index.js';

const source: Knex.MigrationSource<(typeof migrations)[number]> = {
  getMigrations: async () => [...migrations],
  getMigrationName: (migration) => migration.name,
  getMigration: async (migration) => migration.module,
};

const LOCK_WAIT_MS = 60_000;

/**
 * Runs pending migrations. API and worker processes start together in the cluster profile: whoever
 * takes knex's migration lock migrates, the others wait for it and then find nothing to do.
 */
export async function migrateToLatest(knex: Knex): Promise<void> {
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      await knex.migrate.latest({ migrationSource: source });
      return;
    } catch (error) {
      const locked = error instanceof Error && error.name === 'MigrationLocked';
      if (!locked || Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
}
