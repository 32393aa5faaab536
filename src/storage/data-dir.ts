import fs from 'node:fs';
import type { Logger } from 'pino';

/**
 * Creates DATA_DIR readable by its owner only: it holds every user's files, the SQLite file with the
 * password hashes and the JWT key, which files created under the usual umask (0644 in 0755 folders)
 * leave open to every local account. An existing folder is the operator's: it is left as it is, with a
 * warning when other accounts can enter it.
 */
export function prepareDataDir(dataDir: string, logger: Logger): void {
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const mode = fs.statSync(dataDir).mode & 0o777;
  if ((mode & 0o077) !== 0) {
    logger.warn({ dataDir, mode: mode.toString(8) }, 'DATA_DIR is open to other local accounts (stored files, password hashes, JWT key): chmod 700 it');
  }
}
