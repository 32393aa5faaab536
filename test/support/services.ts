import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import mysql from 'mysql2/promise';

/** Where `make services` puts the real services; overridable with the same variables the app reads. */
export const SERVICE_DEFAULTS = {
  DB_PRIMARY_URL: process.env.DB_PRIMARY_URL ?? 'mysql://app:app@127.0.0.1:3316/filestore',
  DB_REPLICA_URL: process.env.DB_REPLICA_URL ?? 'mysql://app:app@127.0.0.1:3317/filestore',
  REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
  S3_ENDPOINT: process.env.S3_ENDPOINT ?? 'http://127.0.0.1:7480',
  S3_BUCKET: process.env.S3_BUCKET ?? 'filestore',
  S3_ACCESS_KEY: process.env.S3_ACCESS_KEY ?? 'devkey',
  S3_SECRET_KEY: process.env.S3_SECRET_KEY ?? 'devsecret',
  S3_REGION: process.env.S3_REGION ?? 'us-east-1',
};

export type ServiceName = 'mariadb-pair' | 'redis' | 'ceph-rgw';

function reachable(url: string, defaultPort: number): Promise<boolean> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = net.connect({ host: hostname, port: Number(port || defaultPort), timeout: 1000 });
    socket.once('connect', () => (socket.destroy(), resolve(true)));
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => (socket.destroy(), resolve(false)));
  });
}

const probes: Record<ServiceName, () => Promise<boolean>> = {
  'mariadb-pair': async () =>
    (await reachable(SERVICE_DEFAULTS.DB_PRIMARY_URL, 3306)) && (await reachable(SERVICE_DEFAULTS.DB_REPLICA_URL, 3306)),
  redis: () => reachable(SERVICE_DEFAULTS.REDIS_URL, 6379),
  'ceph-rgw': () => reachable(SERVICE_DEFAULTS.S3_ENDPOINT, 80),
};

/**
 * Whether the named services answer. When one does not: with REQUIRE_SERVICES=1 this throws (CI must
 * not pass by skipping); otherwise it prints one line saying how to start them and returns false.
 */
export async function servicesAvailable(suite: string, needed: ServiceName[]): Promise<boolean> {
  const missing: ServiceName[] = [];
  for (const name of needed) if (!(await probes[name]())) missing.push(name);
  if (missing.length === 0) return true;
  const line = `${suite}: skipped, ${missing.join(', ')} not reachable; start the services with \`make services\``;
  if (process.env.REQUIRE_SERVICES === '1') throw new Error(`${line} (REQUIRE_SERVICES=1, so this fails)`);
  process.stderr.write(line + '\n');
  return false;
}

/** A throw-away database on the primary (replicated to the replica), dropped by the returned cleanup. */
export async function createScratchDatabase(): Promise<{ primaryUrl: string; replicaUrl: string; drop: () => Promise<void> }> {
  const name = `filestore_t_${randomBytes(4).toString('hex')}`;
  const admin = await mysql.createConnection(SERVICE_DEFAULTS.DB_PRIMARY_URL);
  await admin.query(`CREATE DATABASE \`${name}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin`);
  await admin.end();
  const withDb = (url: string) => {
    const parsed = new URL(url);
    parsed.pathname = `/${name}`;
    return parsed.toString();
  };
  const replica = await mysql.createConnection(SERVICE_DEFAULTS.DB_REPLICA_URL);
  try {
    for (let attempt = 0; attempt < 100; attempt++) {
      const [rows] = await replica.query('SHOW DATABASES LIKE ?', [name]);
      if ((rows as unknown[]).length > 0) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  } finally {
    await replica.end();
  }
  return {
    primaryUrl: withDb(SERVICE_DEFAULTS.DB_PRIMARY_URL),
    replicaUrl: withDb(SERVICE_DEFAULTS.DB_REPLICA_URL),
    drop: async () => {
      const conn = await mysql.createConnection(SERVICE_DEFAULTS.DB_PRIMARY_URL);
      await conn.query(`DROP DATABASE IF EXISTS \`${name}\``);
      await conn.end();
    },
  };
}

/** A connection to the test Redis with a key prefix of its own; close() removes its keys and disconnects. */
export function scratchRedis(): { redis: Redis; prefix: string; close(): Promise<void> } {
  const redis = new Redis(SERVICE_DEFAULTS.REDIS_URL);
  const prefix = `filestore-test-${randomBytes(8).toString('hex')}:`;
  return {
    redis,
    prefix,
    async close() {
      const keys = await redis.keys(`${prefix}*`);
      if (keys.length > 0) await redis.del(...keys);
      redis.disconnect();
    },
  };
}
