// The filestore server under benchmark, and its clients: chunked, tus, instant upload.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import tus from 'tus-js-client';
import { summarize } from './cpu-profile-summary.mjs';
import {
  API_START, MiB, REPO_ROOT, expectStatus, freePort, httpClient, onCleanup, percentile, sleep, startChild, stopChild, waitForPort,
} from './lib.mjs';
import { measured, withChildren } from './proc.mjs';
import { CHUNK, INFLIGHT, INSTANT_RUNS, INSTANT_WARMUP, CPU_PROF, PASSWORD, log } from './settings.mjs';

/** The environment without anything filestore reads, so a shell with .services.env loaded cannot leak in. */
function cleanEnv(overrides) {
  const env = {};
  const ours = /^(FILESTORE_|DB_|REDIS_|S3_|JWT_|DATA_DIR$|PORT$|HOST$|LOG_LEVEL$|DEDUPE_SCOPE$|MAX_UPLOAD_BYTES$|UPLOAD_TTL_SECONDS$|READ_YOUR_WRITES_SECONDS$|LOGIN_|ACCESS_TOKEN_|REFRESH_TOKEN_)/;
  for (const [key, value] of Object.entries(process.env)) if (!ours.test(key)) env[key] = value;
  return { ...env, ...overrides };
}

let profileDir = null;

export async function startFilestore(name, dataDir, extraEnv = {}) {
  const main = path.join(REPO_ROOT, 'dist', 'src', 'main.js');
  if (!fs.existsSync(main)) throw new Error(`${main} is missing: build first (npx tsc -p tsconfig.json, or make bench)`);
  const port = await freePort();
  const env = cleanEnv({ FILESTORE_PROFILE: 'embedded', PORT: String(port), HOST: '127.0.0.1', DATA_DIR: dataDir, LOG_LEVEL: 'warn', NODE: process.execPath, ...extraEnv });
  const flags = [];
  if (CPU_PROF) {
    profileDir ??= fs.mkdtempSync(path.join(os.tmpdir(), 'filestore-bench-profile-'));
    flags.push('--cpu-prof', `--cpu-prof-dir=${profileDir}`, `--cpu-prof-name=filestore-${name}.cpuprofile`);
  }
  // BENCH_SERVER_WRAP: a command the server runs under, for diagnostics, e.g.
  // "strace --seccomp-bpf -f -T -e trace=fdatasync,rename -o /tmp/fs.strace" (RSS/CPU then sample node, its child)
  const wrap = (process.env.BENCH_SERVER_WRAP ?? '').split(' ').filter(Boolean);
  const command = wrap.length > 0 ? wrap[0] : API_START;
  const args = [...wrap.slice(1), ...(wrap.length > 0 ? [API_START] : []), ...flags];
  const child = startChild(`filestore-${name}`, command, args, { cwd: REPO_ROOT, env });
  await waitForPort(port, child, 60000);
  const pid = wrap.length > 0 ? withChildren(child.pid).slice(1).pop() ?? child.pid : child.pid;
  // a wrapper such as strace detaches on SIGTERM and leaves node running: node is stopped by its own pid
  if (pid !== child.pid) onCleanup(() => stopPid(pid));
  const client = httpClient(port, Math.max(8, INFLIGHT));
  const health = await client.request('GET', '/healthz');
  if (health.status !== 200) log(`warning: ${name} /healthz answers ${health.status}: ${JSON.stringify(health.body)}`);
  return { child, pid, port, client, name, env };
}

/** SIGTERM to a process this bench started indirectly (under a wrapper), SIGKILL after 15 s. */
async function stopPid(pid) {
  const alive = () => fs.existsSync(`/proc/${pid}`) && !/^State:\s+Z/m.test(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  for (let i = 0; i < 150 && alive(); i += 1) await sleep(100);
  if (alive()) process.kill(pid, 'SIGKILL');
}

export async function stopFilestore(server) {
  server.client.close();
  if (server.pid !== server.child.pid) await stopPid(server.pid);
  await stopChild(server.child);
  const lines = server.child.outputTail().split('\n').filter((l) => l.trim());
  if (lines.length > 0) {
    log(`${server.name} server logged ${lines.length} line(s) at LOG_LEVEL=warn; first ones:`);
    for (const line of lines.slice(0, 3)) log(`  ${line.slice(0, 300)}`);
  }
  if (CPU_PROF) {
    const file = path.join(profileDir, `filestore-${server.name}.cpuprofile`);
    if (fs.existsSync(file)) {
      console.log(`\nCPU profile of the ${server.name} server (kept): ${file}`);
      console.log(summarize(file, { top: 25, inclusiveNames: ['run', 'writeChunk', 'receiveChunk', 'finish', 'complete', 'update'] }));
    } else log(`no CPU profile at ${file} (did the server exit cleanly?)`);
  }
}

export async function userToken(client, username) {
  expectStatus(await client.request('POST', '/api/auth/register', { json: { username, password: PASSWORD } }), `register ${username}`, 201);
  const login = expectStatus(await client.request('POST', '/api/auth/login', { json: { username, password: PASSWORD } }), `login ${username}`, 200);
  return login.body.accessToken;
}

/**
 * filestore's chunked upload: create (with sha1), PUT chunks `inflight` at a time, each streamed from
 * the file, then complete (repeated while 202). Times the whole and the complete step.
 */
export async function chunkedUpload(client, token, { file, size, sha1, name, folder }) {
  const t0 = performance.now();
  const created = expectStatus(
    await client.request('POST', '/api/uploads', { token, json: { name, folder, size, sha1, chunkSize: CHUNK } }),
    'POST /api/uploads', 201,
  );
  const { uploadId, chunkSize, missing } = created.body;
  if (created.body.mode !== 'chunks' || chunkSize !== CHUNK) throw new Error(`unexpected create answer ${JSON.stringify(created.body)}`);
  const queue = [...missing];
  const handle = await fsp.open(file, 'r');
  // each worker reads its chunk whole into its own buffer and sends it in one write, as a CLI would
  const worker = async () => {
    const buffer = Buffer.allocUnsafe(chunkSize);
    for (let index = queue.shift(); index !== undefined; index = queue.shift()) {
      const start = index * chunkSize;
      const length = Math.min(chunkSize, size - start);
      const { bytesRead } = await handle.read(buffer, 0, length, start);
      if (bytesRead !== length) throw new Error(`read ${bytesRead} of chunk ${index}'s ${length} bytes`);
      const body = buffer.subarray(0, length);
      expectStatus(await client.request('PUT', `/api/uploads/${uploadId}/chunks/${index}`, { token, body, length }), `PUT chunk ${index}`, 204);
    }
  };
  try {
    await Promise.all(Array.from({ length: INFLIGHT }, worker));
  } finally {
    await handle.close();
  }
  const tChunks = performance.now();
  let answer;
  let rounds = 0;
  do {
    answer = await client.request('POST', `/api/uploads/${uploadId}/complete`, { token });
    rounds += 1;
  } while (answer.status === 202);
  expectStatus(answer, 'complete', 201, 200);
  const t1 = performance.now();
  if (answer.body.sha1 !== sha1) throw new Error(`completed file has sha1 ${answer.body.sha1}, expected ${sha1}`);
  return { seconds: (t1 - t0) / 1000, transferSeconds: (tChunks - t0) / 1000, completeSeconds: (t1 - tChunks) / 1000, rounds, uploadId };
}

/** tus-js-client in Node: the file as an fs.ReadStream (read per chunk by path), 8 MiB chunks, no retries. */
export function tusUpload({ endpoint, file, metadata = {}, headers = {} }) {
  return new Promise((resolve, reject) => {
    const upload = new tus.Upload(fs.createReadStream(file), {
      endpoint,
      chunkSize: CHUNK,
      metadata,
      headers,
      retryDelays: null,
      storeFingerprintForResuming: false,
      onError: reject,
      onSuccess: (payload) => resolve({ url: upload.url, lastResponse: payload?.lastResponse }),
    });
    upload.start();
  });
}

/** One instant upload: create with the sha1 → challenge → read the 3 ranges locally → proof → 201. */
async function instantUpload(client, token, handle, { size, sha1, name, folder }) {
  const t0 = performance.now();
  const created = expectStatus(await client.request('POST', '/api/uploads', { token, json: { name, folder, size, sha1 } }), 'POST /api/uploads (instant)', 200);
  const tCreated = performance.now();
  if (created.body.mode !== 'proof') throw new Error(`expected a proof challenge, got ${JSON.stringify(created.body).slice(0, 300)}`);
  const { nonce, ranges } = created.body.challenge;
  const pieces = await Promise.all(
    ranges.map(async ({ offset, length }) => {
      const buffer = Buffer.allocUnsafe(length);
      const { bytesRead } = await handle.read(buffer, 0, length, offset);
      return buffer.subarray(0, bytesRead);
    }),
  );
  const hash = createHash('sha256').update(Buffer.from(nonce, 'hex'));
  for (const piece of pieces) hash.update(piece);
  const tProof = performance.now();
  const proved = await client.request('POST', `/api/uploads/${created.body.uploadId}/proof`, { token, json: { proof: hash.digest('hex') } });
  expectStatus(proved, 'POST proof', 201);
  const t1 = performance.now();
  return { total: t1 - t0, create: tCreated - t0, local: tProof - tCreated, proof: t1 - tProof };
}

export async function instantSeries(client, token, file, { size, sha1, folder, pid }) {
  const handle = await fsp.open(file, 'r');
  try {
    for (let i = 0; i < INSTANT_WARMUP; i += 1) await instantUpload(client, token, handle, { size, sha1, folder, name: `warmup-${i}.bin` });
    const samples = [];
    const m = await measured(async () => {
      for (let i = 0; i < INSTANT_RUNS; i += 1) samples.push(await instantUpload(client, token, handle, { size, sha1, folder, name: `instant-${i}.bin` }));
    }, { pid });
    const times = samples.map((s) => s.total);
    const phase = (key) => ({ p50: percentile(samples.map((s) => s[key]), 50), p99: percentile(samples.map((s) => s[key]), 99) });
    return {
      times, p50: percentile(times, 50), p99: percentile(times, 99), max: Math.max(...times), mean: times.reduce((a, b) => a + b, 0) / times.length,
      phases: { create: phase('create'), local: phase('local'), proof: phase('proof') },
      // the server's CPU per upload: how much of the latency is its own work rather than waiting
      serverCpuMs: { main: (m.serverThreads.main * 1000) / INSTANT_RUNS, others: (m.serverThreads.others * 1000) / INSTANT_RUNS },
    };
  } finally {
    await handle.close();
  }
}
