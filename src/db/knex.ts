import fs from 'node:fs';
import path from 'node:path';
import knexFactory, { type Knex } from 'knex';
import type { Logger } from 'pino';
import { SqliteClient } from './sqlite-driver.js';

/** Where the embedded profile's database lives under DATA_DIR. */
export const sqliteFile = (dataDir: string): string => path.join(dataDir, 'filestore.sqlite');

/**
 * The embedded profile's database: one SQLite file under DATA_DIR, one connection (SQLite has one writer).
 * Its checkpoints are meant to run on a SqliteCheckpointer's thread; the connection checkpoints by
 * itself only once the log is far longer than SQLite's default 1000 pages, should that thread fall behind.
 */
export function openSqlite(dataDir: string): Knex {
  fs.mkdirSync(dataDir, { recursive: true });
  return knexFactory({
    client: SqliteClient,
    connection: { filename: sqliteFile(dataDir) },
    useNullAsDefault: true,
    pool: {
      min: 1,
      max: 1,
      afterCreate: (conn: SqliteConnection, done: (err: Error | null, conn: unknown) => void) => {
        reusePreparedStatements(conn);
        conn.pragma('journal_mode = WAL');
        conn.pragma('synchronous = NORMAL');
        conn.pragma('wal_autocheckpoint = 16000');
        conn.pragma('foreign_keys = ON');
        conn.pragma('busy_timeout = 5000');
        done(null, conn);
      },
    },
  });
}

interface SqliteConnection {
  pragma(sql: string): unknown;
  prepare(sql: string): unknown;
}

const MAX_CACHED_STATEMENTS = 500;

/**
 * knex prepares every query anew; preparing cost about as much as running the query (a quarter of an
 * instant upload's database time). The statements are few and fixed, so they are kept per connection.
 * better-sqlite3 runs each to completion before the next, so one statement is never used twice at once.
 */
function reusePreparedStatements(conn: SqliteConnection): void {
  const prepare = conn.prepare.bind(conn);
  const statements = new Map<string, unknown>();
  conn.prepare = (sql: string) => {
    let statement = statements.get(sql);
    if (statement === undefined) {
      if (statements.size >= MAX_CACHED_STATEMENTS) statements.clear();
      statement = prepare(sql);
      statements.set(sql, statement);
    }
    return statement;
  };
}

/**
 * A MariaDB/MySQL connection pool from a mysql:// URL. With `statementTimeoutMs`, no statement (BEGIN and
 * COMMIT included) waits longer than that for its answer: a server that accepts but never answers would
 * otherwise hold the request, and the connection, for ever.
 */
export function openMysql(
  url: string,
  options: { connectTimeoutMs: number; poolMax: number; statementTimeoutMs?: number; logger?: Logger },
): Knex {
  const parsed = new URL(url);
  const { statementTimeoutMs } = options;
  return knexFactory({
    client: 'mysql2',
    connection: {
      host: parsed.hostname,
      port: Number(parsed.port || 3306),
      user: decodeURIComponent(parsed.username),
      password: decodeURIComponent(parsed.password),
      database: parsed.pathname.replace(/^\//, ''),
      charset: 'utf8mb4',
      connectTimeout: options.connectTimeoutMs,
      supportBigNumbers: true,
      bigNumberStrings: false,
    },
    pool: {
      min: 0,
      max: options.poolMax,
      ...(statementTimeoutMs ? { afterCreate: boundStatements(statementTimeoutMs) } : {}),
    },
    acquireConnectionTimeout: options.connectTimeoutMs + 1000,
    // knex writes pool errors to the console by default; keep them in the structured log instead
    ...(options.logger ? { log: knexLog(options.logger) } : {}),
  });
}

type QueryCallback = (error: (Error & { code?: string }) | null, ...results: unknown[]) => void;

interface MysqlConnection {
  query(options: object, values: unknown, callback: QueryCallback): unknown;
  destroy(): void;
}

/**
 * Gives every statement on a connection mysql2's `timeout` (knex passes each as an options object). A
 * connection whose statement timed out still waits for that answer, so it is destroyed: the pool then
 * drops it instead of queueing the next statement behind the lost one.
 */
function boundStatements(timeoutMs: number) {
  return (conn: MysqlConnection, done: (err: Error | null, conn: unknown) => void) => {
    const query = conn.query.bind(conn);
    conn.query = (options, values, callback) =>
      query({ timeout: timeoutMs, ...options }, values, (error, ...results) => {
        if (error?.code === 'PROTOCOL_SEQUENCE_TIMEOUT') conn.destroy();
        callback(error, ...results);
      });
    done(null, conn);
  };
}

function knexLog(logger: Logger): Knex.Config['log'] {
  return {
    warn: (message: unknown) => logger.warn({ knex: String(message) }, 'knex warning'),
    error: (message: unknown) => logger.debug({ knex: String(message) }, 'knex error'),
    deprecate: (message: unknown) => logger.debug({ knex: String(message) }, 'knex deprecation'),
    debug: (message: unknown) => logger.debug({ knex: String(message) }, 'knex debug'),
  };
}
