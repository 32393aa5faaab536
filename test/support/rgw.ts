import { spawn } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import {
  AbortMultipartUploadCommand, DeleteObjectCommand, HeadBucketCommand, ListMultipartUploadsCommand, ListObjectsV2Command,
  PutObjectCommand, S3Client,
} from '@aws-sdk/client-s3';
import { SERVICE_DEFAULTS } from './services.js';

/**
 * The running Ceph gateway (radosgw) of scripts/services/start-ceph-rgw.sh, for fault tests: it may be
 * frozen (SIGSTOP) or stopped and started again with its own command line. The mon and OSD are never
 * touched (the OSD is a memstore: restarting it loses every object). Call restoreGateway() in a
 * finally/afterAll: it thaws or restarts the gateway and waits until S3 answers again.
 */
const DATA = process.env.CEPH_RGW_DATA_DIR ?? '/tmp/filestore-ceph-rgw';
const PID_FILE = path.join(DATA, 'pids', 'client.rgw.pid');
const CONF = path.join(DATA, 'ceph.conf');

interface Launch {
  argv: string[];
  cwd: string;
  env: Record<string, string>;
}

/** How the gateway was started, remembered before it is stopped so it can be started the same way. */
let launch: Launch | undefined;

export const s3 = (): S3Client =>
  new S3Client({
    endpoint: SERVICE_DEFAULTS.S3_ENDPOINT,
    region: SERVICE_DEFAULTS.S3_REGION,
    credentials: { accessKeyId: SERVICE_DEFAULTS.S3_ACCESS_KEY, secretAccessKey: SERVICE_DEFAULTS.S3_SECRET_KEY },
    forcePathStyle: true,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts: 1,
  });

const nulSeparated = (text: string) => text.split('\0').filter(Boolean);

/** The process state letter of `pid` (R, S, T for stopped, Z…), or undefined when there is no such process. */
async function stateOf(pid: number): Promise<string | undefined> {
  const stat = await fsp.readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  return stat?.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
}

const alive = async (pid: number) => !['Z', 'X', undefined].includes(await stateOf(pid));

/** The gateway's pid, after checking it really is radosgw running with the script's ceph.conf. */
async function gatewayPid(): Promise<number | undefined> {
  const pid = Number((await fsp.readFile(PID_FILE, 'utf8').catch(() => '')).trim());
  if (!pid || !(await alive(pid))) return undefined;
  const argv = nulSeparated(await fsp.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => ''));
  if (path.basename(argv[0] ?? '') !== 'radosgw' || argv[argv.indexOf('-c') + 1] !== CONF) return undefined;
  return pid;
}

async function requireGateway(): Promise<number> {
  const pid = await gatewayPid();
  if (!pid) throw new Error(`no radosgw recorded in ${PID_FILE} is running`);
  return pid;
}

async function remember(pid: number): Promise<void> {
  const argv = nulSeparated(await fsp.readFile(`/proc/${pid}/cmdline`, 'utf8'));
  const env = Object.fromEntries(
    nulSeparated(await fsp.readFile(`/proc/${pid}/environ`, 'utf8')).map((entry) => [entry.slice(0, entry.indexOf('=')), entry.slice(entry.indexOf('=') + 1)]),
  );
  launch = { argv, cwd: await fsp.readlink(`/proc/${pid}/cwd`), env };
}

/** Whether S3 answers a signed HeadBucket within `ms`. */
export async function s3Answers(ms = 2000): Promise<boolean> {
  const client = s3();
  try {
    await client.send(new HeadBucketCommand({ Bucket: SERVICE_DEFAULTS.S3_BUCKET }), { abortSignal: AbortSignal.timeout(ms) });
    return true;
  } catch {
    return false;
  } finally {
    client.destroy();
  }
}

/** SIGSTOP: the gateway keeps its port (connections are accepted by the kernel) but answers nothing. */
export async function freezeGateway(): Promise<void> {
  const pid = await requireGateway();
  await remember(pid);
  process.kill(pid, 'SIGSTOP');
}

/**
 * Stops the gateway for real: connections are refused until restoreGateway(). SIGTERM (SIGKILL after
 * 10 s), or at once with `kill` (cuts requests in flight).
 */
export async function stopGateway(options: { kill?: boolean } = {}): Promise<void> {
  const pid = await requireGateway();
  await remember(pid);
  process.kill(pid, options.kill ? 'SIGKILL' : 'SIGTERM');
  for (let waited = 0; (await alive(pid)) && waited < 10_000; waited += 100) await new Promise((resolve) => setTimeout(resolve, 100));
  if (await alive(pid)) process.kill(pid, 'SIGKILL');
  for (let waited = 0; (await alive(pid)) && waited < 5000; waited += 100) await new Promise((resolve) => setTimeout(resolve, 100));
  if (await alive(pid)) throw new Error(`radosgw ${pid} did not exit`);
}

/**
 * Undoes freezeGateway/stopGateway: a frozen gateway gets SIGCONT, a stopped one is started again with
 * the command line, directory and environment it had (its pid recorded where the scripts look for it).
 * Resolves once S3 answers; throws if it does not within 60 s.
 */
export async function restoreGateway(): Promise<void> {
  const pid = await gatewayPid();
  if (pid && (await stateOf(pid)) === 'T') process.kill(pid, 'SIGCONT');
  if (!pid) {
    if (!launch) throw new Error('radosgw is not running and was not stopped by this test: start it with scripts/services/start-ceph-rgw.sh');
    const log = fs.openSync(path.join(DATA, 'log', 'client.rgw.stderr'), 'a');
    const child = spawn(launch.argv[0]!, launch.argv.slice(1), { cwd: launch.cwd, env: launch.env, detached: true, stdio: ['ignore', log, log] });
    fs.closeSync(log);
    child.unref();
    await fsp.writeFile(PID_FILE, `${child.pid}\n`);
  }
  const deadline = Date.now() + 60_000;
  while (!(await s3Answers())) {
    if (Date.now() > deadline) throw new Error('S3 did not answer within 60 s of restoring radosgw');
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** Multipart uploads in progress under `prefix`. */
export async function multipartUploads(prefix: string): Promise<Array<{ key: string; uploadId: string }>> {
  const client = s3();
  try {
    const listed = await client.send(new ListMultipartUploadsCommand({ Bucket: SERVICE_DEFAULTS.S3_BUCKET, Prefix: prefix }));
    return (listed.Uploads ?? []).map((upload) => ({ key: upload.Key!, uploadId: upload.UploadId! }));
  } finally {
    client.destroy();
  }
}

/** Removes every object and unfinished multipart upload under `prefix` (the OSD keeps them in RAM). */
export async function removeObjects(prefix: string): Promise<void> {
  const client = s3();
  const Bucket = SERVICE_DEFAULTS.S3_BUCKET;
  try {
    for (const { key, uploadId } of await multipartUploads(prefix)) {
      await client.send(new AbortMultipartUploadCommand({ Bucket, Key: key, UploadId: uploadId })).catch(() => undefined);
    }
    for (const key of await objectKeys(prefix)) await client.send(new DeleteObjectCommand({ Bucket, Key: key }));
  } finally {
    client.destroy();
  }
}

/** The keys of the objects under `prefix` (the first 1000, sorted). */
export async function objectKeys(prefix: string): Promise<string[]> {
  const client = s3();
  try {
    const listed = await client.send(new ListObjectsV2Command({ Bucket: SERVICE_DEFAULTS.S3_BUCKET, Prefix: prefix }));
    return (listed.Contents ?? []).map((object) => object.Key!);
  } finally {
    client.destroy();
  }
}

export async function putObject(key: string, body: Buffer): Promise<void> {
  const client = s3();
  try {
    await client.send(new PutObjectCommand({ Bucket: SERVICE_DEFAULTS.S3_BUCKET, Key: key, Body: body, ContentLength: body.length }));
  } finally {
    client.destroy();
  }
}
