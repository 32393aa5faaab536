import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { AccessTokens } from './auth/access-tokens.js';
import { AuthService } from './auth/auth.service.js';
import { loadSigningKey } from './auth/secrets.js';
import type { Cache } from './cache/cache.js';
import { MemoryCache } from './cache/cache.memory.js';
import { RedisCache } from './cache/cache.redis.js';
import type { Config } from './config.js';
import { BlobsRepository } from './db/blobs.repository.js';
import { Database } from './db/database.js';
import { FoldersRepository } from './db/folders.repository.js';
import { openMysql, openSqlite } from './db/knex.js';
import { migrateToLatest } from './db/migrate.js';
import { TokensRepository } from './db/tokens.repository.js';
import { UploadsRepository } from './db/uploads.repository.js';
import { UserFilesRepository } from './db/user-files.repository.js';
import { UsersRepository } from './db/users.repository.js';
import { FileService } from './files/file.service.js';
import { FolderService } from './files/folder.service.js';
import type { HealthCheck } from './http/health.routes.js';
import { LocalBlobStore } from './storage/blob-store.local.js';
import { S3BlobStore, createS3Client } from './storage/blob-store.s3.js';
import { TempFiles } from './storage/temp-file.js';
import type { ChunkTracker } from './upload/chunk-tracker.js';
import { RedisChunkTracker } from './upload/chunk-tracker.redis.js';
import { SqlChunkTracker } from './upload/chunk-tracker.sql.js';
import { PrefixHashers } from './upload/prefix-hasher.js';
import { UploadStaging } from './upload/staging.js';
import { UploadCompletion } from './upload/upload-completion.js';
import { UploadService } from './upload/upload.service.js';
import { TusEndpoint } from './upload/tus-endpoint.js';
import { RedisLocker } from './upload/tus-locker.redis.js';
import { MemoryLocker } from '@tus/server';
import type { Locker } from '@tus/utils';

export interface Services {
  config: Config;
  logger: Logger;
  db: Database;
  accessTokens: AccessTokens;
  auth: AuthService;
  files: FileService;
  folders: FolderService;
  uploads: UploadService;
  completion: UploadCompletion;
  tus: TusEndpoint;
  temp: TempFiles;
  healthChecks: Record<string, HealthCheck>;
  close(): Promise<void>;
}

interface ProfileParts {
  db: Database;
  cache: Cache;
  tracker: ChunkTracker;
  locker: Locker;
  s3?: S3BlobStore;
  closeExtra?: () => Promise<void>;
}

/** The profile decides which adapter fills each port; everything above the ports is one code path. */
async function openProfile(config: Config, logger: Logger): Promise<ProfileParts> {
  if (config.FILESTORE_PROFILE === 'embedded') {
    const sqlite = openSqlite(config.DATA_DIR);
    const db = new Database(sqlite, sqlite, { readYourWritesMs: 0, logger });
    return { db, cache: new MemoryCache(), tracker: new SqlChunkTracker(db), locker: new MemoryLocker() };
  }
  const primary = openMysql(config.DB_PRIMARY_URL!, { connectTimeoutMs: 5000, poolMax: 10, logger });
  const replica = openMysql(config.DB_REPLICA_URL!, { connectTimeoutMs: 1500, poolMax: 10, logger });
  const redis = new Redis(config.REDIS_URL!, { maxRetriesPerRequest: 2, lazyConnect: false });
  redis.on('error', (error) => logger.warn({ err: error }, 'redis connection error'));
  const s3 = new S3BlobStore(
    createS3Client({
      endpoint: config.S3_ENDPOINT!,
      bucket: config.S3_BUCKET!,
      accessKeyId: config.S3_ACCESS_KEY!,
      secretAccessKey: config.S3_SECRET_KEY!,
      region: config.S3_REGION,
    }),
    config.S3_BUCKET!,
  );
  const locker = new RedisLocker(redis, redis.duplicate(), config.REDIS_KEY_PREFIX);
  return {
    locker,
    closeExtra: () => locker.close(),
    db: new Database(primary, replica, { readYourWritesMs: config.READ_YOUR_WRITES_SECONDS * 1000, logger }),
    cache: new RedisCache(redis, config.REDIS_KEY_PREFIX),
    tracker: new RedisChunkTracker(redis, config.REDIS_KEY_PREFIX),
    s3,
  };
}

export async function openServices(config: Config, logger: Logger): Promise<Services> {
  const { db, cache, tracker, locker, s3, closeExtra } = await openProfile(config, logger);
  await migrateToLatest(db.primary);
  const users = new UsersRepository(db);
  const userFiles = new UserFilesRepository(db);
  const folderRepo = new FoldersRepository(db);
  const local = new LocalBlobStore(config.DATA_DIR);
  const temp = new TempFiles(config.DATA_DIR);
  const accessTokens = new AccessTokens(await loadSigningKey(config.DATA_DIR, config.JWT_SECRET), config.ACCESS_TOKEN_TTL_SECONDS);
  const auth = new AuthService({
    users,
    tokens: new TokensRepository(db),
    accessTokens,
    cache,
    refreshTtlSeconds: config.REFRESH_TOKEN_TTL_SECONDS,
    loginMaxFailures: config.LOGIN_MAX_FAILURES,
    loginWindowSeconds: config.LOGIN_WINDOW_SECONDS,
  });
  const blobs = new BlobsRepository(db);
  const files = new FileService({
    db,
    blobs,
    userFiles,
    folders: folderRepo,
    landing: local,
    tiers: { local, s3 },
    temp,
  });
  const uploadsRepo = new UploadsRepository(db);
  const staging = new UploadStaging(config.DATA_DIR);
  const hashers = new PrefixHashers();
  const uploads = new UploadService({
    db, uploads: uploadsRepo, blobs, userFiles, files, tracker, staging, hashers,
    ttlSeconds: config.UPLOAD_TTL_SECONDS, dedupeScope: config.DEDUPE_SCOPE,
  });
  const completion = new UploadCompletion({
    db, uploads: uploadsRepo, blobs, files, tracker, staging, hashers, cache, answerWithinMs: 400,
  });
  const tus = new TusEndpoint({
    dataDir: config.DATA_DIR, ttlSeconds: config.UPLOAD_TTL_SECONDS, maxSize: config.MAX_UPLOAD_BYTES,
    locker, files, temp, hashers,
  });
  const healthChecks: Record<string, HealthCheck> = { db: () => db.ping(), disk: () => local.ping() };
  if (config.FILESTORE_PROFILE === 'cluster') {
    healthChecks.redis = () => cache.ping();
    if (s3) healthChecks.s3 = () => s3.ping();
  }
  // Abandoned sessions: their staged bytes and chunk state are collected once they expire.
  const sweep = setInterval(() => {
    Promise.all([uploads.collectExpired(), tus.collectExpired()]).catch((error: unknown) => logger.warn({ err: error }, 'collecting expired uploads failed'));
  }, 60_000);
  sweep.unref();
  return {
    config,
    logger,
    db,
    accessTokens,
    auth,
    files,
    folders: new FolderService({ db, folders: folderRepo, userFiles }),
    uploads,
    completion,
    tus,
    temp,
    healthChecks,
    async close() {
      clearInterval(sweep);
      await Promise.allSettled([db.close(), cache.close(), closeExtra?.()]);
    },
  };
}
