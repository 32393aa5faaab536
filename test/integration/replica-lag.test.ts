import { randomBytes } from 'node:crypto';
import mysql from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runJobs } from '../../workers/schedules.js';
import { startApp, type RunningApp } from '../support/app.js';
import { blobFiles, newUser, sha1 } from '../support/files.js';
import { removeObjects } from '../support/rgw.js';
import { createScratchDatabase, servicesAvailable } from '../support/services.js';
import { MiB } from '../support/uploads.js';
import { sleep, waitFor, waitForTier } from '../support/workers.js';

const cluster = await servicesAvailable('replica lag (cluster profile)', ['mariadb-pair', 'redis', 'ceph-rgw']);

const databaseOf = (url: string) => decodeURIComponent(new URL(url).pathname.slice(1));

/**
 * Copies every table of `sourceUrl`'s database into `targetUrl`'s, on the primary. Replication carries
 * the copy to the replica and nothing after it: the target on the replica then answers as a replica
 * that stopped replicating at this moment (the app user may not stop replication itself).
 */
async function freezeCopy(sourceUrl: string, targetUrl: string): Promise<void> {
  const [source, target] = [databaseOf(sourceUrl), databaseOf(targetUrl)];
  const primary = await mysql.createConnection(sourceUrl);
  try {
    const [tables] = await primary.query<mysql.RowDataPacket[]>(
      "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = ? AND table_type = 'BASE TABLE'",
      [source],
    );
    for (const { name } of tables) {
      await primary.query(`CREATE TABLE \`${target}\`.\`${name}\` LIKE \`${source}\`.\`${name}\``);
      await primary.query(`INSERT INTO \`${target}\`.\`${name}\` SELECT * FROM \`${source}\`.\`${name}\``);
    }
  } finally {
    await primary.end();
  }
}

describe.runIf(cluster)('downloads while the replica lags behind a move to S3 (cluster profile)', () => {
  let app: RunningApp;
  let frozen: Awaited<ReturnType<typeof createScratchDatabase>>;
  let frozenReplica: mysql.Connection;
  const bytes = randomBytes(MiB + 123);

  /**
   * The tier the frozen replica gives the user file's content (what a replica read of the row sees);
   * undefined until the copy's tables and rows have replicated.
   */
  const replicaTier = async (userFileId: string): Promise<string | undefined> => {
    const [rows] = await frozenReplica
      .query<mysql.RowDataPacket[]>('SELECT f.tier FROM user_files uf JOIN files f ON f.id = uf.file_id WHERE uf.id = ?', [userFileId])
      .catch((error: { code?: string }) => {
        if (error.code === 'ER_NO_SUCH_TABLE') return [[] as mysql.RowDataPacket[]] as const;
        throw error;
      });
    return rows[0]?.tier;
  };

  beforeAll(async () => {
    frozen = await createScratchDatabase();
    frozenReplica = await mysql.createConnection(frozen.replicaUrl);
    // no jobs yet: the upload stays on the local tier until the test runs the transfer
    app = await startApp('cluster', { DB_REPLICA_URL: frozen.replicaUrl, READ_YOUR_WRITES_SECONDS: '1' });
  });

  afterAll(async () => {
    await app?.close();
    await frozenReplica?.end();
    await frozen?.drop();
    await removeObjects(`blobs/${sha1(bytes)}/`).catch(() => undefined);
  });

  it('a download finds content moved to S3 while the replica still says it is local', { timeout: 120_000 }, async () => {
    const user = await newUser(app);
    const uploaded = await user.upload('/api/files', { name: 'report.bin', bytes });
    expect(uploaded.status).toBe(201);
    const id = uploaded.json.id as string;

    await freezeCopy(app.services.config.DB_PRIMARY_URL!, frozen.primaryUrl);
    await waitFor('the frozen copy on the replica', async () => (await replicaTier(id)) === 'local', 30_000);

    await runJobs(app.services);
    await waitForTier(app, id, 's3');
    await waitFor('the local blob to go', async () => (await blobFiles(app)).length === 0, 10_000);
    // past read-your-writes: the user's reads go to the replica again
    await sleep(1500);

    const whole = await user.get(`/api/files/${id}/content`);
    expect(whole.status).toBe(200);
    expect(sha1(whole.bytes)).toBe(sha1(bytes));
    const range = await user.get(`/api/files/${id}/content`, { range: 'bytes=1000-1999' });
    expect(range.status).toBe(206);
    expect(range.bytes.equals(bytes.subarray(1000, 2000))).toBe(true);
    const head = await user.request('HEAD', `/api/files/${id}/content`);
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe(String(bytes.length));
    // the replica's row was stale all along: every read above began with it
    expect(await replicaTier(id)).toBe('local');
  });
});
