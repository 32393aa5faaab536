import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { ProfileName } from './app.js';
import { ApiClient } from './client.js';
import { SERVICE_DEFAULTS, createScratchDatabase } from './services.js';
import { freePort } from './workers.js';

const ROOT = path.resolve(import.meta.dirname, '..', '..');

/** What a test undoes at its end, last first (the test file runs them in afterEach). */
export type Cleanups = Array<() => Promise<unknown>>;

/** The real server (`node --import tsx src/main.ts`) as a child process, resolved once it answers HTTP. */
async function startServer(env: Record<string, string>): Promise<{ child: ChildProcess; exited: Promise<unknown> }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (data: Buffer) => (stderr += data.toString()));
  const exited = new Promise((resolve) => child.once('exit', resolve));
  let gone = false;
  void exited.then(() => (gone = true));
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (gone) throw new Error(`server exited during start: ${stderr}`);
    const up = await fetch(`http://127.0.0.1:${env.PORT}/healthz`).then(() => true, () => false);
    if (up) return { child, exited };
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  child.kill('SIGKILL');
  throw new Error(`server did not answer within 60 s: ${stderr}`);
}

/**
 * The environment of a server process of `profile`; in the cluster, a scratch database and a Redis key
 * prefix of its own (`primaryUrl` is where the test itself reaches the primary).
 */
export async function profileEnv(profile: ProfileName, cleanups: Cleanups): Promise<{ env: Record<string, string>; primaryUrl?: string }> {
  if (profile === 'embedded') return { env: { FILESTORE_PROFILE: profile } };
  const scratch = await createScratchDatabase();
  cleanups.push(scratch.drop);
  const env = {
    FILESTORE_PROFILE: profile,
    ...SERVICE_DEFAULTS,
    DB_PRIMARY_URL: scratch.primaryUrl,
    DB_REPLICA_URL: scratch.replicaUrl,
    REDIS_KEY_PREFIX: `filestore-crash:${randomBytes(4).toString('hex')}:`,
  };
  return { env, primaryUrl: scratch.primaryUrl };
}

/** A fresh DATA_DIR and port, the server started on them (killed at the end), and a signed-up client. */
export async function crashableServer(profileEnv: Record<string, string>, cleanups: Cleanups) {
  const dataDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'filestore-crash-'));
  cleanups.push(() => fsp.rm(dataDir, { recursive: true, force: true }));
  const port = await freePort();
  const env = { DATA_DIR: dataDir, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'silent', ...profileEnv };
  let server: Awaited<ReturnType<typeof startServer>> | undefined = await startServer(env);
  const kill = async () => {
    if (!server) return;
    server.child.kill('SIGKILL');
    await server.exited;
    server = undefined;
  };
  cleanups.push(kill);
  const client = new ApiClient(`http://127.0.0.1:${port}`);
  const { userId } = await client.signUp();
  return {
    dataDir,
    client,
    userId,
    pid: () => server?.child.pid,
    /** SIGKILL: the process dies wherever it is, with no chance to tidy up. */
    kill,
    /** SIGKILL unless it is dead already, then a new server on the same DATA_DIR, port and services. */
    async killAndRestart() {
      await kill();
      server = await startServer(env);
    },
  };
}
