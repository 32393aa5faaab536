import { spawn } from 'node:child_process';
import fsp from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SERVICE_DEFAULTS, createScratchDatabase, servicesAvailable } from '../support/services.js';
import { freePort } from '../support/workers.js';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A port some other process already listens on. */
async function takenPort(): Promise<number> {
  const holder = net.createServer();
  await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => new Promise((resolve) => holder.close(resolve)));
  return (holder.address() as net.AddressInfo).port;
}

/** Runs `entry` (src/main.ts or workers/main.ts) until it exits by itself or 30 s pass. */
async function run(entry: string, env: Record<string, string>) {
  const dataDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'filestore-listen-'));
  cleanups.push(() => fsp.rm(dataDir, { recursive: true, force: true }));
  const child = spawn(process.execPath, ['--import', 'tsx', entry], {
    cwd: ROOT,
    env: { ...process.env, DATA_DIR: dataDir, HOST: '127.0.0.1', LOG_LEVEL: 'info', NODE_NO_WARNINGS: '1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  const code = await new Promise<number | null>((resolve) => child.once('exit', (exitCode) => resolve(exitCode)));
  clearTimeout(killer);
  return { code, stdout, stderrLines: stderr.split('\n').filter((line) => line.trim() !== '') };
}

describe('a port already in use at start', () => {
  it('stops the API server with exit code 1 and one stderr line naming PORT and the address, not a "listening" log line', async () => {
    const port = await takenPort();
    const { code, stdout, stderrLines } = await run('src/main.ts', { FILESTORE_PROFILE: 'embedded', PORT: String(port) });
    expect(code).toBe(1); // null: it kept running, serving nothing
    expect(stderrLines).toEqual([expect.stringMatching(new RegExp(`^filestore: cannot listen on 127\\.0\\.0\\.1:${port} \\(PORT\\): .*EADDRINUSE`))]);
    expect(stdout).not.toContain('filestore listening');
  }, 40_000);

  it('stops the worker with exit code 1 and one stderr line naming WORKER_METRICS_PORT and the address, no stack trace', async () => {
    if (!(await servicesAvailable('listen-failure (worker)', ['mariadb-pair', 'redis', 'ceph-rgw']))) return;
    const scratch = await createScratchDatabase();
    cleanups.push(scratch.drop);
    const port = await takenPort();
    const { code, stderrLines } = await run('workers/main.ts', {
      FILESTORE_PROFILE: 'cluster', ...SERVICE_DEFAULTS, DB_PRIMARY_URL: scratch.primaryUrl, DB_REPLICA_URL: scratch.replicaUrl,
      REDIS_KEY_PREFIX: `filestore-listen:${process.pid}:`, WORKER_METRICS_PORT: String(port),
    });
    expect(code).toBe(1);
    expect(stderrLines).toEqual([expect.stringMatching(new RegExp(`^filestore-worker: cannot listen on 127\\.0\\.0\\.1:${port} \\(WORKER_METRICS_PORT\\): .*EADDRINUSE`))]);
  }, 60_000);
});

describe('the worker with Redis unreachable at start', () => {
  it('exits 1 with one stderr line naming REDIS_URL, as it does with MariaDB unreachable, instead of waiting silently', async () => {
    if (!(await servicesAvailable('start-failures (worker, Redis down)', ['mariadb-pair', 'ceph-rgw']))) return;
    const scratch = await createScratchDatabase();
    cleanups.push(scratch.drop);
    const nothingThere = await freePort();
    const { code, stderrLines } = await run('workers/main.ts', {
      FILESTORE_PROFILE: 'cluster', ...SERVICE_DEFAULTS, DB_PRIMARY_URL: scratch.primaryUrl, DB_REPLICA_URL: scratch.replicaUrl,
      REDIS_URL: `redis://127.0.0.1:${nothingThere}`, REDIS_KEY_PREFIX: `filestore-start:${process.pid}:`, WORKER_METRICS_PORT: String(await freePort()),
    });
    expect(code).toBe(1); // null: still waiting after 30 s
    expect(stderrLines).toEqual([expect.stringMatching(/^filestore-worker: failed to start: Redis unreachable \(REDIS_URL\): /)]);
  }, 60_000);
});
