import { randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll } from 'vitest';
import { applyTimeouts, buildApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { openServices, type Services } from '../../src/wiring.js';
import { runJobs } from '../../workers/schedules.js';
import { SERVICE_DEFAULTS, createScratchDatabase, servicesAvailable } from './services.js';

export type ProfileName = 'embedded' | 'cluster';

/**
 * A suite signs up a user per test, all from 127.0.0.1, far more than one person registers in an hour;
 * the tests of the registration throttle give their own limit in `env`.
 */
const TEST_DEFAULTS = { REGISTER_MAX_PER_IP: '100000' };

export interface RunningApp {
  baseUrl: string;
  dataDir: string;
  services: Services;
  close(): Promise<void>;
}

export interface AppOptions {
  /** This process also runs the background jobs. */
  jobs?: boolean;
  /** Log lines (parsed) land here, at LOG_LEVEL (default info when given), instead of nowhere. */
  logLines?: Array<Record<string, unknown>>;
  /** Puts relays (test/support/relay.ts) between the app and its services: returns the URLs to use instead. */
  throughRelays?: (env: Record<string, string>) => Promise<Record<string, string>>;
}

/** Starts the real app on an ephemeral port with a fresh DATA_DIR (and, in cluster, a scratch database). */
export async function startApp(
  profile: ProfileName,
  env: Record<string, string> = {},
  options: AppOptions = {},
): Promise<RunningApp> {
  const dataDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'filestore-test-'));
  let cleanupDb = async () => {};
  const profileEnv: Record<string, string> = { FILESTORE_PROFILE: profile };
  if (profile === 'cluster') {
    const scratch = await createScratchDatabase();
    cleanupDb = scratch.drop;
    Object.assign(profileEnv, SERVICE_DEFAULTS, {
      DB_PRIMARY_URL: scratch.primaryUrl,
      DB_REPLICA_URL: scratch.replicaUrl,
      REDIS_KEY_PREFIX: `filestore-test:${randomBytes(4).toString('hex')}:`,
    });
  }
  if (options.throughRelays) Object.assign(profileEnv, await options.throughRelays(profileEnv));
  const logLevel = options.logLines ? 'info' : 'silent';
  const config = loadConfig({ DATA_DIR: dataDir, LOG_LEVEL: logLevel, PORT: '0', HOST: '127.0.0.1', ...TEST_DEFAULTS, ...profileEnv, ...env });
  const lines = options.logLines;
  const destination = lines && { write: (line: string) => void lines.push(JSON.parse(line)) };
  const services = await openServices(config, destination ? pino({ level: config.LOG_LEVEL }, destination) : pino({ level: config.LOG_LEVEL }));
  // with jobs: this process also runs the queues, as the embedded profile's main and the workers do
  if (options.jobs) await runJobs(services);
  const server = buildApp(services).listen(0, '127.0.0.1');
  // as main.ts: among them a keep-alive longer than fetch keeps idle sockets (close() ends idle sockets)
  applyTimeouts(server, config);
  await new Promise((resolve) => server.once('listening', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    baseUrl: `http://127.0.0.1:${port}`,
    dataDir,
    services,
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await services.close();
      await cleanupDb();
      await fsp.rm(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * Starts the app for the enclosing describe block (beforeAll) and closes it afterwards (afterAll). The
 * returned handle reads through to the running app, so tests use it as they would a RunningApp.
 */
export function useApp(profile: ProfileName, env: Record<string, string> = {}, options: AppOptions = {}): RunningApp {
  let app: RunningApp | undefined;
  beforeAll(async () => {
    app = await startApp(profile, env, options);
  });
  afterAll(async () => {
    await app?.close();
  });
  const current = (): RunningApp => {
    if (!app) throw new Error('the app is not started yet (use it inside a test or hook)');
    return app;
  };
  return {
    get baseUrl() {
      return current().baseUrl;
    },
    get dataDir() {
      return current().dataDir;
    },
    get services() {
      return current().services;
    },
    close: () => current().close(),
  };
}

/** The profiles a suite can run on here: embedded always, cluster when its services answer. */
export async function availableProfiles(suite: string): Promise<ProfileName[]> {
  return (await servicesAvailable(`${suite} (cluster profile)`, ['mariadb-pair', 'redis', 'ceph-rgw']))
    ? ['embedded', 'cluster']
    : ['embedded'];
}
