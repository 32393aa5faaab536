// Memory benchmark: the server's peak RSS on every data path at two file sizes, to check "memory stays
// flat as files grow". Each stage resets the process's VmHWM (echo 5 > /proc/<pid>/clear_refs), samples
// VmRSS every 50 ms, and reports RSS before, the sampled peak and VmHWM afterwards.
//
// Embedded profile (a fresh server per size): (1) chunked upload (BENCH_CHUNK_MB × BENCH_INFLIGHT, complete
// included), (4) downloads from the local tier with curl: whole, the second half as a Range, a slow reader
// (curl --limit-rate 50M, aborted after BENCH_SLOW_SECONDS) and a stalled reader (a socket that reads
// nothing for BENCH_SLOW_SECONDS), (6) instant upload (proof) of the content by a second user, (2) tus with
// tus-js-client, 8 MiB chunks and chunkSize Infinity (one PATCH), (3) curl -F to POST /api/files.
// Cluster profile (BENCH_MEMORY_S3=1): (5) the worker's transfer to S3, downloads from S3 (whole, slow,
// stalled) — at BENCH_S3_SIZES_MB (the memstore OSD holds 4 GiB in all, shared: 4 GiB objects do not fit).
//
//   node bench/run.mjs memory      (make bench BENCH_MODE=memory)
// Environment: BENCH_MEMORY_SIZES_MB (1024,4096), BENCH_S3_SIZES_MB (256,1024), BENCH_MEMORY_S3 (1),
// BENCH_SLOW_SECONDS (5), BENCH_MEMORY_DB (filestore_mem_bench), TMPDIR (the random file and data dir:
// the largest size needs twice its size free). At most one copy of the content is kept besides the
// source file: each upload's file is deleted and gc'd (GC_GRACE_SECONDS=1) before the next one.
import { createHash, randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import tus from 'tus-js-client';
import {
  API_START, MiB, REPO_ROOT, expectStatus, fixed, freePort, hashFile, httpClient, loadLine, makeRandomFile, makeTempDir, onCleanup, run, sleep,
  startChild, stopChild, table, waitForPort, which,
} from './lib.mjs';
import { rssKiB } from './proc.mjs';
import { chunkedUpload, tusUpload, userToken } from './filestore.mjs';
import { log } from './settings.mjs';
import { scratchDatabase, scratchRedisPrefix } from './scratch-cluster.mjs';

const sizesOf = (name, fallback) => (process.env[name] ?? fallback).split(',').map((s) => Math.round(Number(s) * MiB));
const SIZES = sizesOf('BENCH_MEMORY_SIZES_MB', '1024,4096');
const S3_SIZES = sizesOf('BENCH_S3_SIZES_MB', '256,1024');
const WITH_S3 = (process.env.BENCH_MEMORY_S3 ?? '1') === '1';
const SLOW_SECONDS = Number(process.env.BENCH_SLOW_SECONDS ?? 5);
const DATABASE = process.env.BENCH_MEMORY_DB ?? 'filestore_mem_bench';
const PRIMARY = process.env.BENCH_DB_PRIMARY ?? 'mysql://app:app@127.0.0.1:3316';
const REPLICA = process.env.BENCH_DB_REPLICA ?? 'mysql://app:app@127.0.0.1:3317';
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const INSTANT_RUNS = 20;
const FLAT_MIB = 15;
// BENCH_PORT_BASE: the servers listen on this port and the next ones instead of free ones the OS picks
let nextPort = Number(process.env.BENCH_PORT_BASE ?? 0);
const port = () => (nextPort ? Promise.resolve(nextPort++) : freePort());
const LIMIT_MB = 200;

// ------------------------------------------------------------------ /proc

function status(pid) {
  try {
    return fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return '';
  }
}
const field = (text, name) => Number(new RegExp(`^${name}:\\s+(\\d+)\\s+kB`, 'm').exec(text)?.[1] ?? 0);

/** Resets pid's VmHWM, samples VmRSS every 50 ms while `fn` runs; resolves { before, peak, hwm } in KiB. */
async function peakDuring(pid, fn) {
  fs.writeFileSync(`/proc/${pid}/clear_refs`, '5');
  const before = rssKiB(pid);
  let peak = before;
  const timer = setInterval(() => (peak = Math.max(peak, rssKiB(pid))), 50);
  let result;
  try {
    result = await fn();
  } finally {
    clearInterval(timer);
  }
  const s = status(pid);
  peak = Math.max(peak, field(s, 'VmRSS'));
  return { before, peak, hwm: field(s, 'VmHWM'), result };
}

// ------------------------------------------------------------------ clients

async function curl(args) {
  const r = await run('curl', ['-sS', ...args]);
  if (r.code !== 0) throw new Error(`curl ${args.join(' ')}: exit ${r.code}: ${r.stderr.slice(0, 300)}`);
  return r.stdout;
}

async function curlGet(url, token, { range, size }) {
  const out = await curl(['-o', '/dev/null', '-w', '%{http_code} %{size_download}', '-H', `Authorization: Bearer ${token}`, ...(range ? ['-H', `Range: bytes=${range}`] : []), url]);
  const [code, bytes] = out.trim().split(' ').map(Number);
  if (code !== (range ? 206 : 200) || bytes !== size) throw new Error(`GET ${url} ${range ?? ''}: HTTP ${code}, ${bytes} bytes, expected ${size}`);
}

/** curl --limit-rate 50M, stopped after SLOW_SECONDS; resolves the bytes it had received. */
async function curlSlow(url, token) {
  const child = startChild('curl-slow', 'curl', ['-sS', '--limit-rate', '50M', '-o', '/dev/null', '-w', '%{size_download}', '-H', `Authorization: Bearer ${token}`, url]);
  await sleep(SLOW_SECONDS * 1000);
  if (child.exitCode !== null) log(`the slow curl ended before ${SLOW_SECONDS} s (a small file): ${child.outputTail()}`);
  await stopChild(child);
}

/** A client that sends the request and then reads nothing for SLOW_SECONDS (the server meets a full socket). */
function stalledReader(port, urlPath, token) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: urlPath, headers: { authorization: `Bearer ${token}` } });
    req.on('error', reject);
    req.on('response', (res) => {
      if (res.statusCode !== 200) reject(new Error(`stalled reader: HTTP ${res.statusCode}`));
      res.pause();
      setTimeout(() => {
        req.destroy();
        resolve();
      }, SLOW_SECONDS * 1000);
    });
  });
}

async function curlForm(port, token, file, name) {
  const out = await curl(['-w', '\n%{http_code}', '-H', `Authorization: Bearer ${token}`, '-F', `file=@${file};filename=${name}`, `http://127.0.0.1:${port}/api/files`]);
  const lines = out.trim().split('\n');
  const code = Number(lines.pop());
  if (code !== 201 && code !== 200) throw new Error(`POST /api/files: HTTP ${code}: ${lines.join('\n').slice(0, 300)}`);
  return JSON.parse(lines.join('\n'));
}

/** tus-js-client with chunkSize Infinity: the whole file in one PATCH (read by path from the ReadStream). */
function tusOnePatch({ endpoint, file, metadata, headers }) {
  return new Promise((resolve, reject) => {
    const upload = new tus.Upload(fs.createReadStream(file), {
      endpoint, chunkSize: Infinity, metadata, headers, retryDelays: null, storeFingerprintForResuming: false, onError: reject, onSuccess: resolve,
    });
    upload.start();
  });
}

/** INSTANT_RUNS instant uploads (create with the sha1 → proof of the challenged ranges → 201). */
async function instantUploads(client, token, file, { size, sha1, folder }) {
  const handle = await fsp.open(file, 'r');
  try {
    for (let i = 0; i < INSTANT_RUNS; i += 1) {
      const created = expectStatus(await client.request('POST', '/api/uploads', { token, json: { name: `instant-${i}.bin`, folder, size, sha1 } }), 'POST /api/uploads', 200);
      if (created.body.mode !== 'proof') throw new Error(`expected a proof challenge, got ${JSON.stringify(created.body).slice(0, 300)}`);
      const hash = createHash('sha256').update(Buffer.from(created.body.challenge.nonce, 'hex'));
      for (const { offset, length } of created.body.challenge.ranges) {
        const buffer = Buffer.alloc(length);
        await handle.read(buffer, 0, length, offset);
        hash.update(buffer);
      }
      const proof = hash.digest('hex');
      expectStatus(await client.request('POST', `/api/uploads/${created.body.uploadId}/proof`, { token, json: { proof } }), 'POST proof', 201);
    }
  } finally {
    await handle.close();
  }
}

async function findFile(client, token, folder, name) {
  const list = expectStatus(await client.request('GET', `/api/files?folder=${encodeURIComponent(folder)}`, { token }), 'list', 200);
  const found = list.body.files.find((f) => f.name === name);
  if (!found) throw new Error(`${folder}/${name} is not listed`);
  return found;
}

/** Bytes under dir (allocated, so sparse tus placeholders count as what they hold). */
function duBytes(dir) {
  let total = 0;
  const walk = (d) => {
    for (const entry of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, entry.name);
      if (entry.isDirectory()) walk(p);
      else if (entry.isFile()) total += fs.statSync(p).blocks * 512;
    }
  };
  if (fs.existsSync(dir)) walk(dir);
  return total;
}

async function waitFor(what, test, timeoutMs = 120_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await test())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(250);
  }
}

// ------------------------------------------------------------------ servers

function cleanEnv(overrides) {
  const ours = /^(FILESTORE_|DB_|REDIS_|S3_|JWT_|DATA_DIR$|PORT$|HOST$|LOG_LEVEL$|WORKER_|GC_|VERIFY_|DEDUPE_SCOPE$|MAX_UPLOAD_BYTES$|UPLOAD_TTL_SECONDS$|READ_YOUR_WRITES_SECONDS$|LOGIN_|ACCESS_TOKEN_|REFRESH_TOKEN_|ADMIN_USERS$)/;
  return { ...Object.fromEntries(Object.entries(process.env).filter(([key]) => !ours.test(key))), ...overrides };
}

async function startApi(env, name) {
  const apiPort = await port();
  const child = startChild(name, API_START, [], { cwd: REPO_ROOT, env: { ...env, PORT: String(apiPort), NODE: process.execPath } });
  await waitForPort(apiPort, child, 60_000);
  return { child, pid: child.pid, port: apiPort, client: httpClient(apiPort) };
}

// ------------------------------------------------------------------ embedded

async function embeddedRound(tmp, size, rows) {
  const label = `${size / MiB} MiB`;
  const file = path.join(tmp, `random-${size / MiB}.bin`);
  log(`writing ${label} of random data`);
  await makeRandomFile(file, size);
  const sha1 = await hashFile(file);
  const dataDir = path.join(tmp, `data-${size / MiB}`);
  const env = cleanEnv({
    FILESTORE_PROFILE: 'embedded', HOST: '127.0.0.1', DATA_DIR: dataDir, LOG_LEVEL: 'warn', ACCESS_TOKEN_TTL_SECONDS: '86400',
    GC_GRACE_SECONDS: '1', GC_INTERVAL_SECONDS: '2',
  });
  const api = await startApi(env, `filestore-mem-${size / MiB}`);
  try {
    const { client, pid, port } = api;
    const tokenA = await userToken(client, 'mem-a');
    const tokenB = await userToken(client, 'mem-b');
    const record = (stage, m) => {
      rows.push({ stage, size, ...m });
      log(`${stage} ${label}: before ${fixed(m.before / 1024)} MiB, peak ${fixed(m.peak / 1024)} MiB, VmHWM ${fixed(m.hwm / 1024)} MiB`);
    };
    const blobsGone = async () => {
      await waitFor('gc of the deleted content', () => duBytes(path.join(dataDir, 'blobs')) === 0 && duBytes(path.join(dataDir, 'tmp')) === 0);
    };
    const remove = async (token, id) => expectStatus(await client.request('DELETE', `/api/files/${id}`, { token }), 'DELETE', 204);

    record('1 chunked upload', await peakDuring(pid, () => chunkedUpload(client, tokenA, { file, size, sha1, name: 'chunked.bin', folder: '/mem' })));
    const stored = await findFile(client, tokenA, '/mem', 'chunked.bin');
    const url = `http://127.0.0.1:${port}/api/files/${stored.id}/content`;
    record('4 download, whole', await peakDuring(pid, () => curlGet(url, tokenA, { size })));
    const half = Math.floor(size / 2);
    record('4 download, Range 2nd half', await peakDuring(pid, () => curlGet(url, tokenA, { range: `${half}-`, size: size - half })));
    record(`4 download, 50 MB/s reader ${SLOW_SECONDS} s`, await peakDuring(pid, () => curlSlow(url, tokenA)));
    record(`4 download, stalled reader ${SLOW_SECONDS} s`, await peakDuring(pid, () => stalledReader(port, `/api/files/${stored.id}/content`, tokenA)));
    record(`6 instant upload ×${INSTANT_RUNS}, 2nd user`, await peakDuring(pid, () => instantUploads(client, tokenB, file, { size, sha1, folder: '/mem' })));
    const instantFiles = expectStatus(await client.request('GET', '/api/files?folder=/mem', { token: tokenB }), 'list', 200).body.files;
    for (const f of instantFiles) await remove(tokenB, f.id);
    await remove(tokenA, stored.id);
    await blobsGone();

    const endpoint = `http://127.0.0.1:${port}/api/tus`;
    const headers = { Authorization: `Bearer ${tokenA}` };
    record('2 tus, 8 MiB chunks', await peakDuring(pid, () => tusUpload({ endpoint, file, headers, metadata: { filename: 'tus8.bin', folder: '/mem' } })));
    await remove(tokenA, (await findFile(client, tokenA, '/mem', 'tus8.bin')).id);
    await blobsGone();
    record('2 tus, one PATCH', await peakDuring(pid, () => tusOnePatch({ endpoint, file, headers, metadata: { filename: 'tus1.bin', folder: '/mem' } })));
    await remove(tokenA, (await findFile(client, tokenA, '/mem', 'tus1.bin')).id);
    await blobsGone();
    record('3 curl -F POST /api/files', await peakDuring(pid, () => curlForm(port, tokenA, file, 'form.bin')));
    await remove(tokenA, (await findFile(client, tokenA, '/', 'form.bin')).id);
    await blobsGone();
  } finally {
    api.client.close();
    await stopChild(api.child);
    fs.rmSync(dataDir, { recursive: true, force: true });
    fs.rmSync(file, { force: true });
  }
}

// ------------------------------------------------------------------ cluster (S3)

async function clusterRounds(tmp, rows) {
  const { S3, s3Kit } = await import('./tiers-s3.mjs');
  const prefix = `fsbench-mem-${randomBytes(4).toString('hex')}:`;
  const kit = await s3Kit();
  const { admin } = await scratchDatabase(DATABASE, { primary: PRIMARY, replica: REPLICA });
  await scratchRedisPrefix(REDIS_URL, prefix);
  const dataDir = path.join(tmp, 'data-cluster');
  const env = cleanEnv({
    FILESTORE_PROFILE: 'cluster', HOST: '127.0.0.1', DATA_DIR: dataDir, LOG_LEVEL: 'warn', ACCESS_TOKEN_TTL_SECONDS: '86400',
    DB_PRIMARY_URL: `${PRIMARY}/${DATABASE}`, DB_REPLICA_URL: `${REPLICA}/${DATABASE}`, REDIS_URL, REDIS_KEY_PREFIX: prefix,
    S3_ENDPOINT: S3.endpoint, S3_BUCKET: S3.bucket, S3_ACCESS_KEY: S3.accessKeyId, S3_SECRET_KEY: S3.secretAccessKey, S3_REGION: S3.region,
    GC_GRACE_SECONDS: '1', GC_INTERVAL_SECONDS: '2',
  });
  const api = await startApi(env, 'filestore-mem-cluster');
  const worker = startChild('filestore-mem-worker', process.execPath, [path.join(REPO_ROOT, 'dist', 'workers', 'main.js')], {
    cwd: REPO_ROOT, env: { ...env, WORKER_METRICS_PORT: String(await port()) },
  });
  try {
    const { client, pid, port } = api;
    const token = await userToken(client, 'mem-s3');
    const tier = async (sha1) => (await admin.query(`SELECT tier FROM \`${DATABASE}\`.files WHERE sha1 = ?`, [sha1]))[0][0]?.tier;
    for (const size of S3_SIZES) {
      const label = `${size / MiB} MiB`;
      const file = path.join(tmp, `s3-${size / MiB}.bin`);
      await makeRandomFile(file, size);
      const sha1 = await hashFile(file);
      onCleanup(() => kit.purge(`blobs/${sha1}/`));
      const name = `s3-${size / MiB}.bin`;
      // the worker takes the transfer job as soon as the upload completes: sample it from the upload's start
      const transfer = await peakDuring(worker.pid, async () => {
        await curlForm(port, token, file, name);
        await waitFor('the transfer to S3', async () => (await tier(sha1)) === 's3', 600_000);
      });
      rows.push({ stage: '5 worker: upload lands + transfer to S3', size, ...transfer });
      log(`transfer ${label}: worker before ${fixed(transfer.before / 1024)} MiB, peak ${fixed(transfer.peak / 1024)} MiB`);
      const stored = await findFile(client, token, '/', name);
      const url = `http://127.0.0.1:${port}/api/files/${stored.id}/content`;
      rows.push({ stage: '5 API: download from S3, whole', size, ...(await peakDuring(pid, () => curlGet(url, token, { size }))) });
      rows.push({ stage: `5 API: download from S3, 50 MB/s reader ${SLOW_SECONDS} s`, size, ...(await peakDuring(pid, () => curlSlow(url, token))) });
      rows.push({ stage: `5 API: download from S3, stalled reader ${SLOW_SECONDS} s`, size, ...(await peakDuring(pid, () => stalledReader(port, `/api/files/${stored.id}/content`, token))) });
      expectStatus(await client.request('DELETE', `/api/files/${stored.id}`, { token }), 'DELETE', 204);
      await waitFor('gc of the S3 object', async () => (await kit.list(`blobs/${sha1}/`)).length === 0);
      fs.rmSync(file, { force: true });
    }
  } finally {
    api.client.close();
    await Promise.all([stopChild(api.child), stopChild(worker)]);
  }
}

// ------------------------------------------------------------------ report

function report(rows) {
  const stages = [...new Set(rows.map((r) => r.stage))];
  const sizes = [...new Set(rows.map((r) => r.size))];
  const mib = (kib) => fixed(kib / 1024, 0);
  const header = ['path', ...sizes.flatMap((s) => [`${s / MiB} MiB before`, 'peak', 'VmHWM']), 'growth', `≤ ${LIMIT_MB} MB`];
  const body = stages.map((stage) => {
    const cells = sizes.map((s) => rows.find((r) => r.stage === stage && r.size === s));
    const present = cells.filter(Boolean);
    const top = (r) => Math.max(r.peak, r.hwm);
    const growth = present.length > 1 ? (top(present.at(-1)) - top(present[0])) / 1024 : null;
    const within = present.every((r) => (top(r) * 1024) / 1e6 <= LIMIT_MB) ? 'yes' : 'NO';
    return [stage, ...cells.flatMap((r) => (r ? [mib(r.before), mib(r.peak), mib(r.hwm)] : ['', '', ''])), growth === null ? '' : fixed(growth, 0), within];
  });
  console.log(table(header, body, ['l', ...header.slice(1, -1).map(() => 'r'), 'l']));
  console.log(`RSS in MiB; growth: the larger size's peak less the smaller's (flat: within ~${FLAT_MIB} MiB). A stage starts from what`);
  console.log('the ones before it left (before), and a process\'s peak also rises with the bytes it has seen so far: compare rows over runs.');
}

export async function memoryBenchmark() {
  if (!which('curl')) throw new Error('curl is not installed');
  console.log('\n=== filestore memory: server RSS per data path and file size ===');
  console.log(`${new Date().toISOString()}  node ${process.version}  ${loadLine()}`);
  const tmp = await makeTempDir('mem-filestore-bench-');
  const rows = [];
  for (const size of SIZES) await embeddedRound(tmp, size, rows);
  console.log('\nEmbedded profile (API process):');
  report(rows);
  if (WITH_S3) {
    const s3Rows = [];
    await clusterRounds(tmp, s3Rows);
    console.log('\nCluster profile (worker process during the transfer, API process during downloads):');
    report(s3Rows);
  }
}

