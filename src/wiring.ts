import type { Logger } from 'pino';
import { AdminService } from './admin/admin.service.js';
import { AccessTokens } from './auth/access-tokens.js';
import { AuthService } from './auth/auth.service.js';
import { PasswordHashing } from './auth/password-hashing.js';
import { loadSigningKey } from './auth/secrets.js';
import type { Cache } from './cache/cache.js';
import { MemoryCache } from './cache/cache.memory.js';
import type { Config } from './config.js';
import { BlobsRepository } from './db/blobs.repository.js';
import { Database } from './db/database.js';
import { FoldersRepository } from './db/folders.repository.js';
import { openMysql, openSqlite, sqliteFile } from './db/knex.js';
import { SqliteCheckpointer } from './db/sqlite-checkpointer.js';
import { migrateToLatest } from './db/migrate.js';
import { TokensRepository } from './db/tokens.repository.js';
import { UploadsRepository } from './db/uploads.repository.js';
import { UserFilesRepository } from './db/user-files.repository.js';
import { UsersRepository } from './db/users.repository.js';
import { ContentStore } from './files/content-store.js';
import { FileService } from './files/file.service.js';
import { FolderService } from './files/folder.service.js';
import type { HealthCheck } from './http/health.routes.js';
import { enqueueTransfer, type JobQueue } from './jobs/job-queue.js';
import { SqlJobQueue } from './jobs/job-queue.sql.js';
import { LocalBlobStore } from './storage/blob-store.local.js';
import { prepareDataDir } from './storage/data-dir.js';
import type { S3BlobStore } from './storage/blob-store.s3.js';
import { TempFiles } from './storage/temp-file.js';
import type { ChunkTracker } from './upload/chunk-tracker.js';
import { SqlChunkTracker } from './upload/chunk-tracker.sql.js';
import { PrefixHashers } from './upload/prefix-hasher.js';
import { UploadStaging } from './upload/staging.js';
import { TusEndpoint } from './upload/tus-endpoint.js';
import { MemoryTusLocker, type TusLocker } from './upload/tus-locker.js';
import { UploadCompletion } from './upload/upload-completion.js';
import { UploadService } from './upload/upload.service.js';
import { LocalVerificationLock, type VerificationLock } from './upload/verification-lock.js';

export interface Services {
  config: Config;
  logger: Logger;
  db: Database;
  blobs: BlobsRepository;
  users: UsersRepository;
  content: ContentStore;
  local: LocalBlobStore;
  s3?: S3BlobStore;
  jobs: JobQueue;
  accessTokens: AccessTokens;
  auth: AuthService;
  passwords: PasswordHashing;
  files: FileService;
  folders: FolderService;
  uploads: UploadService;
  completion: UploadCompletion;
  tus: TusEndpoint;
  verifiers: VerificationLock;
  admin: AdminService;
  temp: TempFiles;
  healthChecks: Record<string, HealthCheck>;
  close(): Promise<void>;
}

/** The adapters of one profile: everything above these ports is one code path. */
interface ProfileParts {
  db: Database;
  cache: Cache;
  tracker: ChunkTracker;
  verifiers: VerificationLock;
  locker: TusLocker;
  jobs: JobQueue;
  s3?: S3BlobStore;
  extraChecks: Record<string, HealthCheck>;
  migrate(): Promise<void>;
  close(): Promise<void>;
}

function openEmbedded(config: Config, logger: Logger): ProfileParts {
  const sqlite = openSqlite(config.DATA_DIR);
  const db = new Database(sqlite, sqlite, { readYourWritesMs: 0, logger });
  const jobs = new SqlJobQueue(db, logger);
  const checkpointer = new SqliteCheckpointer(sqliteFile(config.DATA_DIR), logger);
  const locker = new MemoryTusLocker({ acquireLockTimeout: config.TUS_LOCK_TIMEOUT_SECONDS * 1000 });
  return {
    db, jobs, cache: new MemoryCache(), tracker: new SqlChunkTracker(db), verifiers: new LocalVerificationLock(), locker, extraChecks: {},
    migrate: () => migrateToLatest(sqlite),
    close: async () => {
      await jobs.close();
      await checkpointer.close();
    },
  };
}

/** Cluster adapters are loaded only here: the embedded profile never pays for the S3 SDK, ioredis or BullMQ. */
async function openCluster(config: Config, logger: Logger, role: Role): Promise<ProfileParts> {
  const [{ Redis }, { logErrors, readyOrAfter, requestRedisOptions }, { RedisCache }, { RedisChunkTracker }, { RedisVerificationLock }, { RedisLocker }, { BullJobQueue }, { S3BlobStore }] =
    await Promise.all([
      import('ioredis'),
      import('./cache/redis-client.js'),
      import('./cache/cache.redis.js'),
      import('./upload/chunk-tracker.redis.js'),
      import('./upload/verification-lock.redis.js'),
      import('./upload/tus-locker.redis.js'),
      import('./jobs/job-queue.bullmq.js'),
      import('./storage/blob-store.s3.js'),
    ]);
  const dbTimeoutMs = config.DB_TIMEOUT_SECONDS * 1000;
  const redisTimeoutMs = config.REDIS_TIMEOUT_SECONDS * 1000;
  const statementTimeoutMs = role === 'api' ? dbTimeoutMs : WORKER_STATEMENT_TIMEOUT_MS;
  const primary = openMysql(config.DB_PRIMARY_URL!, { connectTimeoutMs: dbTimeoutMs, poolMax: 10, statementTimeoutMs, logger });
  const replica = openMysql(config.DB_REPLICA_URL!, { connectTimeoutMs: 1500, poolMax: 10, statementTimeoutMs, logger });
  const redis = logErrors(new Redis(config.REDIS_URL!, requestRedisOptions(redisTimeoutMs)), logger, 'commands');
  const credentials = { accessKeyId: config.S3_ACCESS_KEY!, secretAccessKey: config.S3_SECRET_KEY!, region: config.S3_REGION };
  const s3 = new S3BlobStore({ endpoint: config.S3_ENDPOINT!, ...credentials }, config.S3_BUCKET!, config.S3_PUBLIC_ENDPOINT);
  await readyOrAfter(redis, redisTimeoutMs);
  const subscriber = logErrors(redis.duplicate(), logger, 'tus lock releases');
  const locker = new RedisLocker(redis, subscriber, config.REDIS_KEY_PREFIX, config.TUS_LOCK_TIMEOUT_SECONDS * 1000);
  const cache = new RedisCache(redis, config.REDIS_KEY_PREFIX);
  const jobs = new BullJobQueue(config.REDIS_URL!, `${config.REDIS_KEY_PREFIX}bull`, { logger, commandTimeoutMs: redisTimeoutMs });
  return {
    db: new Database(primary, replica, { readYourWritesMs: config.READ_YOUR_WRITES_SECONDS * 1000, logger }),
    cache, jobs, s3, locker,
    tracker: new RedisChunkTracker(redis, config.REDIS_KEY_PREFIX),
    verifiers: new RedisVerificationLock(redis, config.REDIS_KEY_PREFIX),
    extraChecks: { redis: () => cache.ping(), s3: () => s3.ping() },
    migrate: async () => {
      // a migration may rebuild a large table: its statements get no timeout, on a pool of their own
      const unbounded = openMysql(config.DB_PRIMARY_URL!, { connectTimeoutMs: dbTimeoutMs, poolMax: 2, logger });
      try {
        await migrateToLatest(unbounded);
      } finally {
        await unbounded.destroy();
      }
    },
    close: async () => {
      await jobs.close();
      await locker.close();
      await s3.close();
    },
  };
}

/** Who opens the services: an API process answers clients, a worker runs the background jobs. */
export type Role = 'api' | 'worker';

/**
 * A worker's statements are not a client's wait: gc's and verify's scans of a large `files` table may
 * take minutes, so DB_TIMEOUT_SECONDS would fail them on every run. This only cuts a hung connection.
 */
const WORKER_STATEMENT_TIMEOUT_MS = 10 * 60_000;

export async function openServices(config: Config, logger: Logger, role: Role = 'api'): Promise<Services> {
  prepareDataDir(config.DATA_DIR, logger);
  const profile = config.FILESTORE_PROFILE === 'embedded' ? openEmbedded(config, logger) : await openCluster(config, logger, role);
  const { db, cache, tracker, verifiers, locker, jobs, s3 } = profile;
  await profile.migrate();
  const users = new UsersRepository(db);
  const userFiles = new UserFilesRepository(db);
  const folderRepo = new FoldersRepository(db);
  const blobs = new BlobsRepository(db);
  const local = new LocalBlobStore(config.DATA_DIR);
  const hashers = new PrefixHashers();
  const temp = new TempFiles(config.DATA_DIR, hashers);
  const content = new ContentStore({
    db, blobs, landing: local, tiers: { local, s3 },
    onLanded: s3 ? (fileId) => enqueueTransfer(jobs, fileId) : undefined,
  });
  const accessTokens = new AccessTokens(await loadSigningKey(config.DATA_DIR, config.JWT_SECRET), config.ACCESS_TOKEN_TTL_SECONDS, (id) =>
    users.exists(id),
  );
  const passwords = new PasswordHashing(config.ARGON2_MAX_CONCURRENT, config.ARGON2_MAX_QUEUED);
  const auth = new AuthService({
    users, tokens: new TokensRepository(db), accessTokens, cache, passwords,
    refreshTtlSeconds: config.REFRESH_TOKEN_TTL_SECONDS,
    loginMaxFailures: config.LOGIN_MAX_FAILURES,
    loginMaxFailuresPerIp: config.LOGIN_IP_MAX_FAILURES,
    loginWindowSeconds: config.LOGIN_WINDOW_SECONDS,
    registerMaxPerIp: config.REGISTER_MAX_PER_IP,
    registerWindowSeconds: config.REGISTER_WINDOW_SECONDS,
  });
  const files = new FileService({ db, blobs, userFiles, folders: folderRepo, content, temp });
  const uploadsRepo = new UploadsRepository(db);
  const staging = new UploadStaging(config.DATA_DIR);
  const uploads = new UploadService({
    db, uploads: uploadsRepo, blobs, userFiles, files, tracker, verifiers, staging, hashers,
    ttlSeconds: config.UPLOAD_TTL_SECONDS, dedupeScope: config.DEDUPE_SCOPE,
  });
  const completion = new UploadCompletion({
    uploads: uploadsRepo, files, content, tracker, verifiers, staging, hashers, cache, answerWithinMs: 400,
  });
  const tus = new TusEndpoint({
    dataDir: config.DATA_DIR, ttlSeconds: config.UPLOAD_TTL_SECONDS, maxSize: config.MAX_UPLOAD_BYTES,
    locker, files, temp, hashers, logger,
  });
  return {
    config, logger, db, blobs, users, content, local, s3, jobs, accessTokens, auth, passwords, files,
    folders: new FolderService({ db, folders: folderRepo, userFiles }),
    uploads, completion, tus, temp, verifiers,
    admin: new AdminService({ db, users, jobs, adminUsernames: config.ADMIN_USERS }),
    healthChecks: { db: () => db.ping(), disk: () => local.ping(), ...profile.extraChecks },
    async close() {
      await hashers.close();
      await profile.close();
      await Promise.allSettled([db.close(), cache.close()]);
    },
  };
}
