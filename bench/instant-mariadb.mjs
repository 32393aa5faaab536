// Mode instant-mariadb: (e) on the cluster profile with 1,000,000 seeded rows in `files`.
import path from 'node:path';
import {
  MiB, REPO_ROOT, fixed, freePort, hashFile, loadLine, makeRandomFile, makeTempDir, onCleanup, percentile, sleep, startChild, stopChild, syncDisks, table,
} from './lib.mjs';
import { measured } from './proc.mjs';
import { SIZE, INSTANT_RUNS, INSTANT_WARMUP, log, TARGET_INSTANT_MS } from './settings.mjs';
import { startFilestore, stopFilestore, userToken, chunkedUpload, instantSeries } from './filestore.mjs';
import { throughputRow, details, phaseLine, THROUGHPUT_HEADER, THROUGHPUT_ALIGN, verdict, header } from './report.mjs';
import { scratchDatabase, scratchRedisPrefix } from './scratch-cluster.mjs';
import { assertOsdHasRoom, collectRgwGarbage, s3Kit } from './tiers-s3.mjs';

/**
 * Waits until every server's buffer pool has at most 5% dirty pages (idle servers sit near 4%; up to 60 s): right after a
 * million-row seed the page cleaner flushes for a while, and (e) would time that write-back, not the
 * steady state the target is about.
 */
async function settleInnodb(connections) {
  const started = performance.now();
  const dirtyShares = async () =>
    Promise.all(connections.map(async (connection) => {
      const [rows] = await connection.query("SHOW GLOBAL STATUS WHERE Variable_name IN ('Innodb_buffer_pool_pages_dirty', 'Innodb_buffer_pool_pages_total')");
      const value = (name) => Number(rows.find((row) => row.Variable_name === name)?.Value ?? 0);
      return value('Innodb_buffer_pool_pages_dirty') / Math.max(1, value('Innodb_buffer_pool_pages_total'));
    }));
  let shares = await dirtyShares();
  const before = shares.map((share) => `${fixed(share * 100, 1)}%`).join(' / ');
  while (shares.some((share) => share > 0.05) && performance.now() - started < 60_000) {
    await sleep(250);
    shares = await dirtyShares();
  }
  const after = shares.map((share) => `${fixed(share * 100, 1)}%`).join(' / ');
  return `dirty pages primary / replica ${before} → ${after} in ${fixed((performance.now() - started) / 1000, 1)} s`;
}

export async function instantMariadb() {
  const { seedFiles } = await import('./seed-files.mjs');
  const database = process.env.BENCH_DB_NAME ?? 'filestore_bench';
  const primaryBase = process.env.BENCH_DB_PRIMARY ?? 'mysql://app:app@127.0.0.1:3316';
  const replicaBase = process.env.BENCH_DB_REPLICA ?? 'mysql://app:app@127.0.0.1:3317';
  const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  const seedRows = Number(process.env.BENCH_SEED_ROWS ?? 1_000_000);
  const redisPrefix = `filestore-bench-${process.pid}:`;
  header('filestore instant upload on the cluster profile (MariaDB)', [
    `database ${database} on ${new URL(primaryBase).host} (replica ${new URL(replicaBase).host}), ${seedRows} seeded rows in files; Redis prefix ${redisPrefix}; file ${(SIZE / MiB).toFixed(0)} MiB`,
  ]);

  const { admin, replica } = await scratchDatabase(database, { primary: primaryBase, replica: replicaBase, keep: process.env.BENCH_KEEP_DB === '1' });
  await scratchRedisPrefix(redisUrl, redisPrefix);

  const tmp = await makeTempDir('filestore-bench-');
  const file = path.join(tmp, 'random.bin');
  log(`writing ${SIZE / MiB} MiB of random data`);
  await makeRandomFile(file, SIZE);
  const sha1 = await hashFile(file, 'sha1');
  syncDisks();

  log('starting the server (cluster profile); its migrations create the tables');
  const server = await startFilestore('cluster', path.join(tmp, 'data-cluster'), {
    FILESTORE_PROFILE: 'cluster',
    DB_PRIMARY_URL: `${primaryBase}/${database}`,
    DB_REPLICA_URL: `${replicaBase}/${database}`,
    REDIS_URL: redisUrl,
    REDIS_KEY_PREFIX: redisPrefix,
    S3_ENDPOINT: process.env.S3_ENDPOINT ?? 'http://127.0.0.1:7480',
    S3_BUCKET: process.env.S3_BUCKET ?? 'filestore',
    S3_ACCESS_KEY: process.env.S3_ACCESS_KEY ?? 'devkey',
    S3_SECRET_KEY: process.env.S3_SECRET_KEY ?? 'devsecret',
    S3_REGION: process.env.S3_REGION ?? 'us-east-1',
  });
  onCleanup(() => server.client.close());
  const report = {};
  try {
    log(`seeding ${seedRows} rows into ${database}.files in 5,000-row batches`);
    let shown = 0;
    report.seed = await seedFiles(`${primaryBase}/${database}`, {
      rows: seedRows,
      batch: 5000,
      onProgress: (done, seconds) => {
        if (done - shown >= 200_000 || done === seedRows) {
          shown = done;
          log(`  ${done} rows, ${seconds.toFixed(1)} s`);
        }
      },
    });
    const tReplica = performance.now();
    for (;;) {
      const [[{ n }]] = await replica.query(`SELECT COUNT(*) AS n FROM \`${database}\`.files`);
      if (Number(n) >= seedRows) break;
      if (performance.now() - tReplica > 600_000) throw new Error('the replica did not catch up within 10 minutes');
      await sleep(500);
    }
    report.replicaWait = (performance.now() - tReplica) / 1000;
    await admin.query(`ANALYZE TABLE \`${database}\`.files`);
    const [[sizes]] = await admin.query(
      "SELECT data_length AS data, index_length AS indexes, @@innodb_buffer_pool_size AS pool, @@innodb_flush_method AS flush FROM information_schema.TABLES WHERE table_schema = ? AND table_name = 'files'",
      [database],
    );
    report.sizes = sizes;

    // reference: the point lookup the instant path makes, straight on the primary
    const [[{ maxId }]] = await admin.query(`SELECT MAX(id) AS maxId FROM \`${database}\`.files`);
    const lookups = [];
    for (let i = 0; i < 200; i += 1) {
      const id = 1 + Math.floor(Math.random() * Number(maxId));
      const [[row]] = await admin.query(`SELECT sha1 FROM \`${database}\`.files WHERE id = ?`, [id]);
      if (!row) continue;
      const t0 = performance.now();
      await admin.query(`SELECT * FROM \`${database}\`.files WHERE sha1 = ? LIMIT 1`, [row.sha1]);
      lookups.push(performance.now() - t0);
    }
    report.lookup = { p50: percentile(lookups, 50), p99: percentile(lookups, 99), n: lookups.length };

    // Not comparable with (c) of `node bench/run.mjs`: this server sat idle through the seeding, and after
    // ~30 s idle V8 runs a major GC every 30–90 ms during a 1 GiB upload (41–55 per GiB instead of 0–4,
    // later back-to-back uploads included, either profile: embedded 3.4–4.7 CPU s/GiB against 1.9–2.4),
    // while (c) times a server that never idled since its start.
    log('the first user uploads the content (chunked; cluster profile)');
    const alice = await userToken(server.client, 'bench-alice');
    const m = await measured(() => chunkedUpload(server.client, alice, { file, size: SIZE, sha1, name: 'chunked.bin', folder: '/bench' }), { pid: server.pid });
    report.chunked = { ...m, note: `complete ${fixed(m.result.completeSeconds * 1000, 0)} ms; Redis chunk bitmap` };
    syncDisks();
    log('waiting for InnoDB to write back the dirty pages of the seeding and the upload (steady state)');
    report.settle = await settleInnodb([admin, replica]);

    log(`(e) instant upload by a second user, ${INSTANT_WARMUP} warm-up + ${INSTANT_RUNS} timed`);
    const bob = await userToken(server.client, 'bench-bob');
    report.instant = await instantSeries(server.client, bob, file, { size: SIZE, sha1, folder: '/instant', pid: server.pid });
    const [[{ rows }]] = await admin.query(`SELECT COUNT(*) AS \`rows\` FROM \`${database}\`.files`);
    report.rows = Number(rows);

    // In use, content moves to Ceph within minutes of its upload, and a proof then reads its 3 ranges there
    log('moving the content to Ceph (the worker takes the transfer job its completion queued)');
    await assertOsdHasRoom();
    // the content is random: everything under blobs/<sha1>/ is this run's, and a memstore OSD full of
    // past runs' objects blocks every write to it
    onCleanup(async () => {
      const kit = await s3Kit();
      await kit.purge(`blobs/${sha1}/`);
      await collectRgwGarbage();
    });
    report.moveSeconds = await moveToCeph(server, admin, `\`${database}\`.files`, sha1);
    log(`(e) again with the content in Ceph, ${INSTANT_WARMUP} warm-up + ${INSTANT_RUNS} timed`);
    report.instantCeph = await instantSeries(server.client, bob, file, { size: SIZE, sha1, folder: '/instant-ceph', pid: server.pid });
  } finally {
    await stopFilestore(server);
  }

  console.log(`\n${loadLine()} (at end)`);
  console.log(`\nseeding: ${report.seed.rows} rows in ${fixed(report.seed.seconds, 1)} s (${Math.round(report.seed.rowsPerSecond)} rows/s, 5,000-row batches); replica caught up ${fixed(report.replicaWait, 1)} s later; files now holds ${report.rows} rows`);
  const mb = (bytes) => fixed(Number(bytes) / MiB, 0);
  console.log(`files: ${mb(report.sizes.data)} MiB clustered (primary key), ${mb(report.sizes.indexes)} MiB secondary indexes (sha1 unique, status); primary's innodb_buffer_pool_size ${mb(report.sizes.pool)} MiB, flush method ${report.sizes.flush}`);
  console.log(`InnoDB write-back before (e): ${report.settle}`);
  console.log(`point SELECT by sha1 on the primary (reference): p50 ${fixed(report.lookup.p50, 2)} ms, p99 ${fixed(report.lookup.p99, 2)} ms (n=${report.lookup.n})`);
  console.log('');
  console.log(table(THROUGHPUT_HEADER, [throughputRow('chunked upload, cluster profile (context)', report.chunked)], THROUGHPUT_ALIGN));
  console.log(details('chunked upload, cluster profile', report.chunked));
  console.log(`\n(e) instant upload on MariaDB with ${report.rows} rows in files, POST /api/uploads → 201 of the proof, n=${report.instant.times.length} after ${INSTANT_WARMUP} warm-up`);
  const row = (where, i) => [where, fixed(i.p50, 2), fixed(i.p99, 2), fixed(i.max, 2), fixed(i.mean, 2), `<= ${TARGET_INSTANT_MS}`, `p50 ${verdict(i.p50 <= TARGET_INSTANT_MS)}, p99 ${verdict(i.p99 <= TARGET_INSTANT_MS)}`];
  console.log(table(
    ['content', 'p50 ms', 'p99 ms', 'max ms', 'mean ms', 'target', ''],
    [row('local disk (just uploaded)', report.instant), row(`in Ceph (moved in ${fixed(report.moveSeconds, 1)} s)`, report.instantCeph)],
    ['l', 'r', 'r', 'r', 'r', 'r', 'l'],
  ));
  console.log(`local disk: ${phaseLine(report.instant)}`);
  console.log(`in Ceph:    ${phaseLine(report.instantCeph)}`);
}

/** Runs the worker until the content `sha1` is on the s3 tier (its row says so), then stops it; returns the seconds it took. */
async function moveToCeph(server, admin, filesTable, sha1) {
  const started = performance.now();
  const worker = startChild('filestore-worker', process.execPath, [path.join(REPO_ROOT, 'dist', 'workers', 'main.js')], {
    cwd: REPO_ROOT, env: { ...server.env, WORKER_METRICS_PORT: String(await freePort()) },
  });
  try {
    for (;;) {
      const [[row]] = await admin.query(`SELECT tier FROM ${filesTable} WHERE sha1 = ?`, [sha1]);
      if (row?.tier === 's3') return (performance.now() - started) / 1000;
      if (performance.now() - started > 600_000) throw new Error(`the content is not in Ceph after 10 minutes:\n${worker.outputTail()}`);
      await sleep(250);
    }
  } finally {
    await stopChild(worker);
  }
}
