import { createRequire } from 'node:module';
import type { Knex } from 'knex';

const require = createRequire(import.meta.url);

/**
 * Which build of better-sqlite3 this Node can run. Up to 12 it is built on node::ObjectWrap, whose
 * destructor on Node ≥ 24.19 asserts an entered context: a statement collected by an idle garbage
 * collection aborts the process (nodejs/node#65446; here 2 of 6 starts of the server on Node 24.21).
 * 13 is built on Node-API and runs clean there (0 of 10), but segfaults on Node 20. Both are installed
 * (13 under the alias better-sqlite3-napi, with prebuilt binaries) and the runtime picks.
 */
export function sqliteModuleFor(nodeVersion: string): 'better-sqlite3' | 'better-sqlite3-napi' {
  return Number(nodeVersion.split('.')[0]) >= 22 ? 'better-sqlite3-napi' : 'better-sqlite3';
}

export const sqliteModulePath: string = require.resolve(sqliteModuleFor(process.versions.node));

const BetterSqliteClient = require('knex/lib/dialects/better-sqlite3/index.js') as typeof Knex.Client;

/** knex's better-sqlite3 dialect, loading the build this Node can run. */
export class SqliteClient extends BetterSqliteClient {
  _driver(): unknown {
    return require(sqliteModulePath);
  }
}
