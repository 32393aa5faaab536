// The cluster profile's scratch state for a benchmark: a database made on the primary (and waited for on
// the replica), dropped at the end, and a Redis key prefix whose keys are removed at the end.
import { onCleanup, sleep } from './lib.mjs';
import { log } from './settings.mjs';

/** A fresh database `database` (a filestore_… name: it is dropped first); returns connections to both servers. */
export async function scratchDatabase(database, { primary, replica, keep = false }) {
  if (!/^filestore_[a-z0-9_]+$/.test(database)) throw new Error(`a bench database must be a scratch name filestore_…, not ${database}`);
  const mysql = (await import('mysql2/promise')).default;
  const admin = await mysql.createConnection({ uri: primary });
  onCleanup(async () => {
    if (keep) log(`keeping database ${database} (BENCH_KEEP_DB=1)`);
    else {
      await admin.query(`DROP DATABASE IF EXISTS \`${database}\``);
      log(`dropped database ${database}`);
    }
    await admin.end();
  });
  await admin.query(`DROP DATABASE IF EXISTS \`${database}\``);
  await admin.query(`CREATE DATABASE \`${database}\` CHARACTER SET utf8mb4`);
  const onReplica = await mysql.createConnection({ uri: replica });
  onCleanup(() => onReplica.end());
  for (let i = 0; !(await onReplica.query('SHOW DATABASES LIKE ?', [database]))[0].length; i += 1) {
    if (i > 300) throw new Error(`database ${database} did not reach the replica in 30 s`);
    await sleep(100);
  }
  return { admin, replica: onReplica };
}

/** Removes the keys under `prefix` when the bench ends (the servers it started write them). */
export async function scratchRedisPrefix(redisUrl, prefix) {
  const { Redis } = await import('ioredis');
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 2 });
  onCleanup(async () => {
    let removed = 0;
    for await (const keys of redis.scanStream({ match: `${prefix}*`, count: 500 })) if (keys.length > 0) removed += await redis.del(...keys);
    log(`removed ${removed} Redis key(s) under ${prefix}`);
    redis.disconnect();
  });
}
