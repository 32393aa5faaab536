import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import fsp from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { buildProcessors } from '../../workers/processors/index.js';
import type { RunningApp } from './app.js';
import type { ApiClient } from './client.js';
import { filesUnder } from './files.js';

const ROOT = path.resolve(import.meta.dirname, '..', '..');

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Whether `file` exists now. */
export const fileExists = (file: string) => fsp.stat(file).then(() => true, () => false);

/** One gc run by a fresh processor set, as the schedule runs it: each of its sweeps runs at once. */
export const runGc = (app: RunningApp) => buildProcessors(app.services).gc({});

/** Polls `probe` until it returns something other than undefined/false; throws after `timeoutMs`. */
export async function waitFor<T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 30_000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer().once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

/** The `files` row behind a user file id (read on the primary). */
export async function contentOf(app: RunningApp, userFileId: string) {
  const db = app.services.db.primary;
  const link = await db('user_files').where({ id: userFileId }).first('file_id');
  if (!link) throw new Error(`no user_files row ${userFileId}`);
  return db('files').where({ id: link.file_id }).first() as Promise<{ id: number; sha1: string; size: number; tier: 'local' | 's3'; location: string; status: string; verified_at: number | null }>;
}

/** The S3 key a transfer gives a landing: its row id and the random tag of its local file's name. */
export function archiveKeyOf(landed: { sha1: string; id: number; location: string }): string {
  return `blobs/${landed.sha1}/${landed.id}.${landed.location.slice(landed.location.lastIndexOf('.') + 1)}`;
}

/** Waits until the content behind `userFileId` is on `tier`; returns its row. */
export function waitForTier(app: RunningApp, userFileId: string, tier: 'local' | 's3', timeoutMs = 60_000) {
  return waitFor(`file ${userFileId} on tier ${tier}`, async () => {
    const row = await contentOf(app, userFileId);
    return row.tier === tier ? row : undefined;
  }, timeoutMs, 200);
}

/** GETs a file's content streaming it through SHA-1 (never the whole body in memory). */
export async function downloadSha1(client: ApiClient, userFileId: string): Promise<{ status: number; sha1: string; size: number }> {
  const response = await fetch(`${client.baseUrl}/api/files/${userFileId}/content`, { headers: { authorization: `Bearer ${client.token}` } });
  const hash = createHash('sha1');
  let size = 0;
  for await (const piece of response.body ?? []) {
    hash.update(piece);
    size += piece.length;
  }
  return { status: response.status, sha1: hash.digest('hex'), size };
}

/**
 * POST /api/files of a large file through node:http on a connection of its own, the body streamed from
 * `bytes` without copying it into a FormData (fetch would, and would reuse a keep-alive socket), in
 * pieces of `pieceBytes` with `pauseMs` between them (a slow client whose body is still arriving).
 */
export function uploadLarge(
  client: ApiClient,
  name: string,
  bytes: Buffer,
  { pieceBytes = 4 * 1024 * 1024, pauseMs = 0 }: { pieceBytes?: number; pauseMs?: number } = {},
): Promise<{ status: number; json: any }> {
  const boundary = `----filestore-large-${Math.random().toString(36).slice(2)}`;
  const head = Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${name}"\r\nContent-Type: application/octet-stream\r\n\r\n`);
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  return new Promise((resolve, reject) => {
    const req = http.request(
      `${client.baseUrl}/api/files`,
      {
        method: 'POST',
        agent: false,
        headers: {
          authorization: `Bearer ${client.token}`,
          'content-type': `multipart/form-data; boundary=${boundary}`,
          'content-length': String(head.length + bytes.length + tail.length),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString() || 'null') }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.write(head);
    void (async () => {
      for (let offset = 0; offset < bytes.length; offset += pieceBytes) {
        req.write(bytes.subarray(offset, offset + pieceBytes));
        if (pauseMs > 0) await sleep(pauseMs);
      }
      req.end(tail);
    })();
  });
}

/** Starts a GET of the file's content and hangs up after the first bytes arrive, as an impatient client does. */
export function abandonDownload(client: ApiClient, userFileId: string): Promise<void> {
  return new Promise((resolve) => {
    const req = http.get(`${client.baseUrl}/api/files/${userFileId}/content`, { headers: { authorization: `Bearer ${client.token}` }, agent: false }, (res) => {
      res.once('data', () => req.destroy());
    });
    req.on('error', () => undefined).on('close', () => resolve());
  });
}

/** File descriptors of this process open on something below `dir` (startApp serves from this process). */
export async function openFilesUnder(dir: string): Promise<number> {
  let count = 0;
  for (const fd of await fsp.readdir('/proc/self/fd')) {
    const target = await fsp.readlink(`/proc/self/fd/${fd}`).catch(() => '');
    if (target.startsWith(dir + path.sep)) count += 1;
  }
  return count;
}

/** Files below DATA_DIR that hold `probe` anywhere in their bytes (a distinctive slice of some content). */
export async function filesHolding(dataDir: string, probe: Buffer): Promise<string[]> {
  const found: string[] = [];
  for (const file of await filesUnder(dataDir)) {
    const bytes = await fsp.readFile(path.join(dataDir, file)).catch(() => undefined);
    if (bytes && bytes.indexOf(probe) !== -1) found.push(file);
  }
  return found;
}

/** The value of one Prometheus sample line (`name{labels} value`), or undefined when absent. */
export function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const found = Object.fromEntries([...(match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([key, value]) => found[key] === value)) return Number(match[3]);
  }
  return undefined;
}

export interface WorkerProcess {
  child: ChildProcess;
  metricsPort: number;
  /** Every pino line the worker wrote so far, parsed. */
  logLines(): Array<Record<string, unknown> & { msg?: string }>;
  /** SIGKILL (default) or another signal; resolves once the process is gone. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** The environment a worker needs to share `app`'s database, Redis prefix, bucket and DATA_DIR. */
export function workerEnv(app: RunningApp): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(app.services.config)) {
    if (value === undefined) continue;
    env[key] = Array.isArray(value) ? value.join(',') : String(value);
  }
  return { ...env, LOG_LEVEL: 'info', HOST: '127.0.0.1' };
}

/** `node --import tsx workers/main.ts` as a child, resolved once it logs 'filestore worker running'. */
export async function startWorker(env: Record<string, string>): Promise<WorkerProcess> {
  const metricsPort = await freePort();
  const child = spawn(process.execPath, ['--import', 'tsx', 'workers/main.ts'], {
    cwd: ROOT,
    env: { ...process.env, ...env, WORKER_METRICS_PORT: String(metricsPort) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (data: Buffer) => (stdout += data.toString()));
  child.stderr!.on('data', (data: Buffer) => (stderr += data.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let gone = false;
  void exited.then(() => (gone = true));
  const logLines = () =>
    stdout.split('\n').filter(Boolean).flatMap((line) => {
      try {
        return [JSON.parse(line)];
      } catch {
        return [];
      }
    });
  const worker: WorkerProcess = {
    child,
    metricsPort,
    logLines,
    async stop(signal = 'SIGKILL') {
      if (!gone) child.kill(signal);
      await exited;
    },
  };
  try {
    await waitFor('the worker to start', async () => {
      if (gone) throw new Error(`worker exited during start: ${stderr}`);
      return logLines().some((line) => line.msg === 'filestore worker running');
    }, 60_000);
  } catch (error) {
    await worker.stop();
    throw error;
  }
  return worker;
}
