// Seeds the `files` table (stored contents) with random rows by bulk inserts, for the instant-upload
// benchmark on MariaDB. The table must exist already (start the server once: its migrations make it).
//
//   node bench/seed-files.mjs [rows] [batch]
//     SEED_DB_URL   mysql://app:app@127.0.0.1:3316/filestore_bench   (never the real `filestore` database)
//
// bench/run.mjs instant-mariadb imports seedFiles() from here.
import { randomBytes, randomInt } from 'node:crypto';
import mysql from 'mysql2/promise';

export const DEFAULT_SEED_URL = 'mysql://app:app@127.0.0.1:3316/filestore_bench';

/**
 * Inserts `rows` random `files` rows (random sha1, 'local' tier, 'available') in `batch`-row
 * multi-row INSERTs on one connection. Resolves { rows, seconds, rowsPerSecond }.
 *
 * The sha1 values are uniformly random but inserted in ascending order: each batch then appends to the
 * right edge of the unique sha1 index. In random order every insert's unique check reads a random
 * index page, and with a buffer pool smaller than the index (the dev pair runs 16 MiB, O_DIRECT) that
 * is one disk read per row: ~2,000 rows/s instead of tens of thousands.
 */
export async function seedFiles(url, { rows = 1_000_000, batch = 5000, onProgress } = {}) {
  const database = new URL(url).pathname.replace(/^\//, '');
  if (!/^filestore_/.test(database)) throw new Error(`seed-files: refusing to seed "${database}"; use a scratch database named filestore_…`);
  const connection = await mysql.createConnection({ uri: url, supportBigNumbers: true });
  try {
    const t0 = performance.now();
    const now = Date.now();
    const hex = randomBytes(20 * rows).toString('hex');
    const keys = Array.from({ length: rows }, (_, i) => hex.slice(i * 40, i * 40 + 40)).sort();
    for (let done = 0; done < rows; ) {
      const n = Math.min(batch, rows - done);
      const values = new Array(n);
      for (let i = 0; i < n; i += 1) {
        const sha1 = keys[done + i];
        values[i] = [sha1, randomInt(1, 2 ** 40), 'local', `${sha1.slice(0, 2)}/${sha1.slice(2, 4)}/${sha1}`, 'available', now, now];
      }
      await connection.query('INSERT INTO files (sha1, size, tier, location, status, created_at, updated_at) VALUES ?', [values]);
      done += n;
      onProgress?.(done, (performance.now() - t0) / 1000);
    }
    const seconds = (performance.now() - t0) / 1000;
    return { rows, seconds, rowsPerSecond: rows / seconds };
  } finally {
    await connection.end();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const rows = Number(process.argv[2] ?? 1_000_000);
  const batch = Number(process.argv[3] ?? 5000);
  const url = process.env.SEED_DB_URL ?? DEFAULT_SEED_URL;
  let shown = 0;
  const result = await seedFiles(url, {
    rows,
    batch,
    onProgress: (done, seconds) => {
      if (done - shown >= 100_000 || done === rows) {
        shown = done;
        process.stderr.write(`seed-files: ${done} rows in ${seconds.toFixed(1)} s\n`);
      }
    },
  });
  process.stdout.write(`seeded ${result.rows} rows in ${result.seconds.toFixed(1)} s (${Math.round(result.rowsPerSecond)} rows/s)\n`);
}
