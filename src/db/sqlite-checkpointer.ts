import type { Logger } from 'pino';
import { Thread } from '../thread.js';
import { sqliteModulePath } from './sqlite-driver.js';

const CHECKPOINT_EVERY_MS = 250;

/**
 * Copies the embedded database's write-ahead log into the database file on a thread of its own, with
 * its own connection. SQLite's automatic checkpoint runs inside whichever commit crosses the WAL's page
 * limit, copying the pages and fsyncing the file on the event loop: about one instant upload in 150
 * waited for it (≈ +5 ms at the bench's p99). These checkpoints are PASSIVE: they never block a writer,
 * and an open reader only delays them. If the thread dies, the next round starts a fresh one; the
 * connections' own automatic checkpoint, set far higher (see openSqlite), stays as the safety net.
 */
export class SqliteCheckpointer {
  private readonly thread: Thread;
  private readonly timer: NodeJS.Timeout;
  private running: Promise<unknown> | null = null;
  private lastFailure = '';

  constructor(filename: string, logger: Logger) {
    this.thread = new Thread(WORKER_SOURCE, { filename, modulePath: sqliteModulePath });
    this.timer = setInterval(() => {
      if (this.running) return;
      this.running = this.thread
        .request({ op: 'checkpoint' })
        .catch((error: unknown) => this.warnOnce(logger, error))
        .finally(() => (this.running = null));
    }, CHECKPOINT_EVERY_MS);
    this.timer.unref();
  }

  /** Stops the rounds and closes the thread's connection (a last checkpoint is SQLite's own, at close). */
  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
    await this.thread.request({ op: 'close' }).catch(() => undefined);
    await this.thread.close();
  }

  /** Every round retries: a failure is told once, not four times a second. */
  private warnOnce(logger: Logger, error: unknown): void {
    const message = error instanceof Error ? error.message : String(error);
    if (message !== this.lastFailure) logger.warn({ err: error }, 'sqlite checkpoint failed');
    this.lastFailure = message;
  }
}

/** The checkpoint thread (plain CommonJS, so it runs the same from sources and from dist). */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const fs = require('node:fs');
const Database = require(workerData.modulePath);
let db = null;

parentPort.on('message', (message) => {
  try {
    if (message.op === 'close') {
      if (db) db.close();
      db = null;
      return parentPort.postMessage({ request: message.request, result: null });
    }
    // before the server's own connection has made the file there is nothing to do
    if (!db && !fs.existsSync(workerData.filename)) return parentPort.postMessage({ request: message.request, result: null });
    db ??= new Database(workerData.filename, { fileMustExist: true, timeout: 5000 });
    const [result] = db.pragma('wal_checkpoint(PASSIVE)');
    parentPort.postMessage({ request: message.request, result });
  } catch (error) {
    parentPort.postMessage({ request: message.request, error: { message: String(error && error.message) } });
  }
});
`;
