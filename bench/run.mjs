// Upload benchmark of filestore against the physical limit (nginx WebDAV PUT) and the peer
// (@tus/server + tus-js-client), all on 127.0.0.1, one random file, one run, side by side.
//
//   node bench/run.mjs                  upload benchmark, embedded profile (make bench)
//   node bench/run.mjs instant-mariadb  instant upload (proof) on the cluster profile, MariaDB with
//                                       1,000,000 rows in `files` (scratch database filestore_bench);
//                                       also: make bench BENCH_MODE=instant-mariadb
//   node bench/run.mjs tiers            local → Ceph transfer vs bare lib-storage, downloads per tier,
//                                       cluster profile (bench/tiers.mjs); make bench BENCH_MODE=tiers
//
// Needs dist/ (npx tsc -p tsconfig.json; make bench builds first). Environment:
//   BENCH_SIZE_MB=1024      size of the random file (e.g. 64 for a quick run)
//   BENCH_STAGES=a,b,c,d,e,f  stages of the upload benchmark to run
//   BENCH_CHUNK_MB=8 BENCH_INFLIGHT=4 BENCH_INSTANT_RUNS=1000 (with 50, p99 would be the maximum)
//   BENCH_INSTANT_WARMUP=200 (untimed instant uploads first: steady state, not the JIT's warm-up)
//   BENCH_CPU_PROF=1        run the filestore server under --cpu-prof; the profile is kept and summarised
//   BENCH_SERVER_WRAP="strace --seccomp-bpf -f -T -e trace=fdatasync -o FILE"  run the server under a tool
//   BENCH_SEED_ROWS=1000000 BENCH_KEEP_DB=1 (instant-mariadb: keep filestore_bench afterwards)
// Everything it starts (nginx, servers) is stopped and its temp files removed at the end, also on failure.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import tus from 'tus-js-client';
import { summarize } from './cpu-profile-summary.mjs';
import {
  MiB, REPO_ROOT, cleanup, expectStatus, fixed, freePort, hashFile, httpClient, loadLine, makeRandomFile,
  makeTempDir, mbps, measured, mibps, onCleanup, percentile, run, sleep, startChild, stopChild, syncDisks,
  table, waitForPort, which, withChildren,
} from './lib.mjs';

const MODE = process.argv[2] ?? 'upload';
const SIZE = Math.round(Number(process.env.BENCH_SIZE_MB ?? 1024) * MiB);
const CHUNK = Math.round(Number(process.env.BENCH_CHUNK_MB ?? 8) * MiB);
const INFLIGHT = Number(process.env.BENCH_INFLIGHT ?? 4);
const INSTANT_RUNS = Number(process.env.BENCH_INSTANT_RUNS ?? 1000);
// The first few hundred uploads after a start run while V8 still compiles the hot paths: their slow
// ones made most of a cold series' p99 (13 of the 21 slowest of 1000 fell in its first 3 s)
const INSTANT_WARMUP = Number(process.env.BENCH_INSTANT_WARMUP ?? 200);
const STAGES = new Set((process.env.BENCH_STAGES ?? 'a,b,c,d,e,f').split(',').map((s) => s.trim()));
const CPU_PROF = process.env.BENCH_CPU_PROF === '1';
const PASSWORD = 'bench-password-1';
const log = (message) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);

// targets (from the brief)
const TARGET_VS_NGINX = 0.8;
const TARGET_VS_PEER = 1.5;
const TARGET_INSTANT_MS = 20;
const TARGET_RSS_BYTES = 200e6;

// ------------------------------------------------------------------ filestore server

/** The environment without anything filestore reads, so a shell with .services.env loaded cannot leak in. */
function cleanEnv(overrides) {
  const env = {};
  const ours = /^(FILESTORE_|DB_|REDIS_|S3_|JWT_|DATA_DIR$|PORT$|HOST$|LOG_LEVEL$|DEDUPE_SCOPE$|MAX_UPLOAD_BYTES$|UPLOAD_TTL_SECONDS$|READ_YOUR_WRITES_SECONDS$|LOGIN_|ACCESS_TOKEN_|REFRESH_TOKEN_)/;
  for (const [key, value] of Object.entries(process.env)) if (!ours.test(key)) env[key] = value;
  return { ...env, ...overrides };
}

let profileDir = null;

async function startFilestore(name, dataDir, extraEnv = {}) {
  const main = path.join(REPO_ROOT, 'dist', 'src', 'main.js');
  if (!fs.existsSync(main)) throw new Error(`${main} is missing: build first (npx tsc -p tsconfig.json, or make bench)`);
  const port = await freePort();
  const env = cleanEnv({ FILESTORE_PROFILE: 'embedded', PORT: String(port), HOST: '127.0.0.1', DATA_DIR: dataDir, LOG_LEVEL: 'warn', ...extraEnv });
  const flags = [];
  if (CPU_PROF) {
    profileDir ??= fs.mkdtempSync(path.join(os.tmpdir(), 'filestore-bench-profile-'));
    flags.push('--cpu-prof', `--cpu-prof-dir=${profileDir}`, `--cpu-prof-name=filestore-${name}.cpuprofile`);
  }
  // BENCH_SERVER_WRAP: a command the server runs under, for diagnostics, e.g.
  // "strace --seccomp-bpf -f -T -e trace=fdatasync,rename -o /tmp/fs.strace" (RSS/CPU then sample node, its child)
  const wrap = (process.env.BENCH_SERVER_WRAP ?? '').split(' ').filter(Boolean);
  const command = wrap.length > 0 ? wrap[0] : process.execPath;
  const args = [...wrap.slice(1), ...(wrap.length > 0 ? [process.execPath] : []), ...flags, main];
  const child = startChild(`filestore-${name}`, command, args, { cwd: REPO_ROOT, env });
  await waitForPort(port, child, 60000);
  const pid = wrap.length > 0 ? withChildren(child.pid).slice(1).pop() ?? child.pid : child.pid;
  // a wrapper such as strace detaches on SIGTERM and leaves node running: node is stopped by its own pid
  if (pid !== child.pid) onCleanup(() => stopPid(pid));
  const client = httpClient(port, Math.max(8, INFLIGHT));
  const health = await client.request('GET', '/healthz');
  if (health.status !== 200) log(`warning: ${name} /healthz answers ${health.status}: ${JSON.stringify(health.body)}`);
  return { child, pid, port, client, name };
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

async function stopFilestore(server) {
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

async function userToken(client, username) {
  expectStatus(await client.request('POST', '/api/auth/register', { json: { username, password: PASSWORD } }), `register ${username}`, 201);
  const login = expectStatus(await client.request('POST', '/api/auth/login', { json: { username, password: PASSWORD } }), `login ${username}`, 200);
  return login.body.accessToken;
}

// ------------------------------------------------------------------ clients

/**
 * filestore's chunked upload: create (with sha1), PUT chunks `inflight` at a time, each streamed from
 * the file, then complete (repeated while 202). Times the whole and the complete step.
 */
async function chunkedUpload(client, token, { file, size, sha1, name, folder }) {
  const t0 = performance.now();
  const created = expectStatus(
    await client.request('POST', '/api/uploads', { token, json: { name, folder, size, sha1, chunkSize: CHUNK } }),
    'POST /api/uploads', 201,
  );
  const { uploadId, chunkSize, missing } = created.body;
  if (created.body.mode !== 'chunks' || chunkSize !== CHUNK) throw new Error(`unexpected create answer ${JSON.stringify(created.body)}`);
  const queue = [...missing];
  const worker = async () => {
    for (let index = queue.shift(); index !== undefined; index = queue.shift()) {
      const start = index * chunkSize;
      const length = Math.min(chunkSize, size - start);
      const body = fs.createReadStream(file, { start, end: start + length - 1, highWaterMark: MiB });
      expectStatus(await client.request('PUT', `/api/uploads/${uploadId}/chunks/${index}`, { token, body, length }), `PUT chunk ${index}`, 204);
    }
  };
  await Promise.all(Array.from({ length: INFLIGHT }, worker));
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
function tusUpload({ endpoint, file, metadata = {}, headers = {} }) {
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

async function instantSeries(client, token, file, { size, sha1, folder, pid }) {
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

// ------------------------------------------------------------------ reference stages

async function nginxPut(tmp, file) {
  const nginx = which('nginx');
  if (!nginx) return { skipped: 'nginx is not installed (apt-get install nginx: Debian builds it with the dav module)' };
  if (!which('curl')) return { skipped: 'curl is not installed' };
  const dir = path.join(tmp, 'nginx');
  for (const sub of ['root', 'client_body']) await fsp.mkdir(path.join(dir, sub), { recursive: true });
  const port = await freePort();
  const template = await fsp.readFile(path.join(import.meta.dirname, 'nginx.conf.template'), 'utf8');
  const conf = template
    .replaceAll('@DIR@', dir)
    .replaceAll('@PORT@', String(port))
    .replace(/^@USER@$/m, process.getuid?.() === 0 ? 'user root root;' : '');
  await fsp.writeFile(path.join(dir, 'nginx.conf'), conf);
  const child = startChild('nginx', nginx, ['-p', `${dir}/`, '-c', path.join(dir, 'nginx.conf'), '-e', path.join(dir, 'error.log')], { group: true });
  try {
    await waitForPort(port, child);
    const m = await measured(
      () => run('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code} %{time_total}', '-T', file, `http://127.0.0.1:${port}/upload.bin`]),
      { pid: child.pid, pids: () => withChildren(child.pid) },
    );
    const [code, curlSeconds] = m.result.stdout.trim().split(' ');
    if (m.result.code !== 0 || !['201', '204'].includes(code)) throw new Error(`curl -T: exit ${m.result.code}, HTTP ${code}: ${m.result.stderr}`);
    const stored = await fsp.stat(path.join(dir, 'root', 'upload.bin'));
    if (stored.size !== SIZE) throw new Error(`nginx stored ${stored.size} bytes, expected ${SIZE}`);
    return { ...m, note: `curl time_total ${Number(curlSeconds).toFixed(2)} s; no fsync` };
  } finally {
    await stopChild(child);
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

async function tusPeer(tmp, file) {
  const dir = path.join(tmp, 'tus-peer');
  await fsp.mkdir(dir, { recursive: true });
  const port = await freePort();
  const child = startChild('tus-peer', process.execPath, [path.join(import.meta.dirname, 'tus-peer.mjs')], {
    env: { ...process.env, PORT: String(port), TUS_DIR: dir },
  });
  try {
    await waitForPort(port, child);
    const m = await measured(() => tusUpload({ endpoint: `http://127.0.0.1:${port}/files/`, file, metadata: { filename: 'peer.bin' } }), { pid: child.pid });
    const id = m.result.url.split('/').pop();
    const stored = await fsp.stat(path.join(dir, id));
    if (stored.size !== SIZE) throw new Error(`@tus/file-store stored ${stored.size} bytes, expected ${SIZE}`);
    return { ...m, note: 'no fsync, no hashing' };
  } finally {
    await stopChild(child);
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

async function ddCopy(tmp, file) {
  const out = path.join(tmp, 'dd.out');
  try {
    const m = await measured(() => run('dd', [`if=${file}`, `of=${out}`, 'bs=8M', 'conv=fsync']));
    if (m.result.code !== 0) throw new Error(`dd failed: ${m.result.stderr}`);
    return { ...m, note: m.result.stderr.trim().split('\n').pop() };
  } finally {
    await fsp.rm(out, { force: true });
  }
}

// ------------------------------------------------------------------ reporting

function throughputRow(label, stage, bytes = SIZE) {
  if (!stage) return null;
  if (stage.skipped) return [label, 'n/a', 'n/a', '', '', '', '', '', '', stage.skipped];
  return [
    label,
    fixed(mibps(bytes, stage.seconds)),
    fixed(mbps(bytes, stage.seconds)),
    fixed(stage.seconds, 2),
    stage.serverCpu === null || stage.serverCpu === undefined ? '' : fixed(stage.serverCpu, 2),
    fixed(stage.clientCpu, 2),
    fixed((((stage.serverCpu ?? 0) + stage.clientCpu) * 1024 * MiB) / bytes, 2),
    `${Math.round(stage.busy * 100)}%`,
    stage.peakRssKiB ? `${fixed(stage.peakRssKiB / 1024, 0)} (${fixed(stage.startRssKiB / 1024, 0)})` : '',
    stage.note ?? '',
  ];
}

/**
 * Where a filestore stage's time went: transfer vs complete, the server's CPU split between its main
 * thread (JavaScript, synchronous hashing, HTTP parsing) and its other threads (libuv pool: file
 * write/read/fsync syscalls; V8 GC helpers), and its read/write syscall counts from /proc/<pid>/io.
 */
function details(label, m) {
  const lines = [`${label}:`];
  const r = m.result;
  if (r?.transferSeconds !== undefined) {
    lines.push(`  chunks ${fixed(r.transferSeconds, 2)} s (${fixed(mibps(SIZE, r.transferSeconds))} MiB/s), then complete ${fixed(r.completeSeconds * 1000, 0)} ms over ${r.rounds} POST(s)`);
  }
  if (m.serverThreads) {
    const perGiB = (s) => fixed((s * 1024 * MiB) / SIZE, 2);
    lines.push(`  server CPU ${fixed(m.serverCpu, 2)} s in ${fixed(m.seconds, 2)} s wall: main thread ${fixed(m.serverThreads.main, 2)} s, other threads ${fixed(m.serverThreads.others, 2)} s (per GiB: ${perGiB(m.serverThreads.main)} + ${perGiB(m.serverThreads.others)} CPU s); bench client ${fixed(m.clientCpu, 2)} s`);
  }
  const io = m.serverIo;
  if (io) {
    const kib = (bytes, count) => (count > 0 ? `${fixed(bytes / count / 1024, 0)} KiB avg` : '');
    lines.push(`  server syscalls (sockets included): ${io.syscw} write-family, ${fixed(io.wchar / MiB, 0)} MiB, ${kib(io.wchar, io.syscw)}; ${io.syscr} read-family, ${fixed(io.rchar / MiB, 0)} MiB, ${kib(io.rchar, io.syscr)}; ${fixed(io.write_bytes / MiB, 0)} MiB sent to disk`);
  }
  return lines.join('\n');
}

const phaseLine = (i) =>
  `phases p50/p99 ms: POST /api/uploads → challenge ${fixed(i.phases.create.p50, 2)}/${fixed(i.phases.create.p99, 2)}; ` +
  `client reads 3 ranges + SHA-256 ${fixed(i.phases.local.p50, 2)}/${fixed(i.phases.local.p99, 2)}; POST proof → 201 ${fixed(i.phases.proof.p50, 2)}/${fixed(i.phases.proof.p99, 2)}\n` +
  `server CPU per instant upload (mean): main thread ${fixed(i.serverCpuMs.main, 2)} ms, other threads ${fixed(i.serverCpuMs.others, 2)} ms`;

const THROUGHPUT_HEADER = ['stage', 'MiB/s', 'MB/s', 'seconds', 'server CPU s', 'client CPU s', 'CPU s/GiB', 'machine busy', 'peak RSS MiB (before)', 'notes'];
const THROUGHPUT_ALIGN = ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'l'];
const verdict = (ok) => (ok === null ? 'n/a' : ok ? 'MET' : 'MISSED');

function header(title, extra = []) {
  console.log(`\n=== ${title} ===`);
  console.log(`${new Date().toISOString()}  node ${process.version}  ${os.cpus()[0]?.model ?? ''}`);
  console.log(`${loadLine()} (at start)`);
  for (const line of extra) console.log(line);
}

// ------------------------------------------------------------------ mode: upload (make bench)

async function uploadBenchmark() {
  header('filestore upload benchmark', [
    `file ${(SIZE / MiB).toFixed(0)} MiB random, 127.0.0.1; chunks ${CHUNK / MiB} MiB, ${INFLIGHT} in flight; stages ${[...STAGES].join(',')}`,
  ]);
  const tmp = await makeTempDir('filestore-bench-');
  const file = path.join(tmp, 'random.bin');
  log(`writing ${SIZE / MiB} MiB of random data to ${file}`);
  await makeRandomFile(file, SIZE);
  syncDisks();

  const results = {};
  log('SHA-1 of the file (node:crypto, streamed from the page cache)');
  const hashing = await measured(() => hashFile(file, 'sha1'));
  const sha1 = hashing.result;
  results.sha1 = { ...hashing, note: sha1 };

  if (STAGES.has('f')) {
    log('(f) dd bs=8M conv=fsync');
    results.dd = await ddCopy(tmp, file);
    syncDisks();
  }
  if (STAGES.has('a')) {
    log('(a) nginx WebDAV PUT, curl -T');
    results.nginx = await nginxPut(tmp, file);
    syncDisks();
  }
  if (STAGES.has('b')) {
    log('(b) @tus/server + @tus/file-store, tus-js-client');
    results.peer = await tusPeer(tmp, file);
    syncDisks();
  }

  let server = null;
  if (['c', 'd', 'e'].some((s) => STAGES.has(s))) {
    server = await startFilestore('embedded', path.join(tmp, 'data-embedded'));
    onCleanup(() => server.client.close());
  }
  try {
    let token = null;
    if (server) token = await userToken(server.client, 'bench-alice');
    let stored = false;
    if (STAGES.has('c')) {
      log('(c) filestore chunked upload');
      const m = await measured(() => chunkedUpload(server.client, token, { file, size: SIZE, sha1, name: 'chunked.bin', folder: '/bench' }), { pid: server.pid });
      const r = m.result;
      results.chunked = {
        ...m,
        note: `complete ${fixed(r.completeSeconds * 1000, 0)} ms; details below`,
      };
      stored = true;
      syncDisks();
    }
    if (STAGES.has('d')) {
      log('(d) filestore tus upload, tus-js-client');
      const m = await measured(
        () => tusUpload({
          endpoint: `http://127.0.0.1:${server.port}/api/tus`,
          file,
          metadata: { filename: 'tus.bin', folder: '/bench', sha1 },
          headers: { Authorization: `Bearer ${token}` },
        }),
        { pid: server.pid },
      );
      const fileId = m.result.lastResponse?.getHeader?.('Filestore-File-Id');
      if (!fileId) throw new Error('the tus upload finished without a Filestore-File-Id header');
      results.tus = { ...m, note: `details below${stored ? '; content already stored by (c): linked by dedupe' : ''}` };
      stored = true;
      syncDisks();
    }
    if (STAGES.has('e')) {
      if (!stored) {
        log('(e) needs the content stored: uploading it once (untimed)');
        await chunkedUpload(server.client, token, { file, size: SIZE, sha1, name: 'seed.bin', folder: '/bench' });
      }
      log(`(e) instant upload by a second user, ${INSTANT_WARMUP} warm-up + ${INSTANT_RUNS} timed`);
      const bob = await userToken(server.client, 'bench-bob');
      results.instant = await instantSeries(server.client, bob, file, { size: SIZE, sha1, folder: '/instant', pid: server.pid });
    }
  } finally {
    if (server) await stopFilestore(server);
  }

  // ---- report
  console.log(`\n${loadLine()} (at end)`);
  console.log(`\nthroughput, ${(SIZE / MiB).toFixed(0)} MiB file. MiB/s = 2^20 bytes/s, MB/s = 10^6 bytes/s. server CPU = CPU seconds of the server process(es) during the stage;`);
  console.log(`client CPU = this bench process + the tools it ran (curl, dd); CPU s/GiB = (server + client) per GiB, the load-independent cost;`);
  console.log(`machine busy = share of all ${os.cpus().length} cores busy during the stage, everyone's work included (above ~90%, the stages compete with other work and MiB/s drops)`);
  const rows = [
    throughputRow('(a) nginx WebDAV PUT, curl -T', results.nginx),
    throughputRow('(b) @tus/server+file-store, tus-js-client', results.peer),
    throughputRow(`(c) filestore chunked, ${CHUNK / MiB} MiB x${INFLIGHT}, end to end`, results.chunked),
    throughputRow('(d) filestore tus, tus-js-client', results.tus),
    throughputRow('(f) dd bs=8M conv=fsync', results.dd),
    throughputRow('(f) node:crypto SHA-1 (page cache)', results.sha1),
  ].filter(Boolean);
  console.log(table(THROUGHPUT_HEADER, rows, THROUGHPUT_ALIGN));
  const detailed = [['(c) filestore chunked', results.chunked], ['(d) filestore tus', results.tus], ['(b) tus peer', results.peer]].filter(([, m]) => m && !m.skipped);
  if (detailed.length > 0) console.log(`\n${detailed.map(([label, m]) => details(label, m)).join('\n')}`);

  if (results.instant) {
    const i = results.instant;
    console.log(`\n(e) instant upload by a second user, POST /api/uploads → 201 of the proof (hashing excluded), n=${i.times.length} after ${INSTANT_WARMUP} warm-up`);
    console.log(table(['p50 ms', 'p99 ms', 'max ms', 'mean ms'], [[fixed(i.p50, 2), fixed(i.p99, 2), fixed(i.max, 2), fixed(i.mean, 2)]], ['r', 'r', 'r', 'r']));
    console.log(phaseLine(i));
  }

  console.log('\ntargets');
  const rate = (stage) => (stage && !stage.skipped ? mibps(SIZE, stage.seconds) : null);
  const c = rate(results.chunked);
  const a = rate(results.nginx);
  const b = rate(results.peer);
  const targetRows = [];
  const ratioRow = (label, value, target) => {
    const ok = value === null ? null : value >= target;
    targetRows.push([label, value === null ? 'n/a' : value.toFixed(2), `>= ${target.toFixed(2)}`, verdict(ok)]);
  };
  ratioRow('(c)/(a)  chunked vs nginx', c && a ? c / a : null, TARGET_VS_NGINX);
  ratioRow('(c)/(b)  chunked vs tus peer', c && b ? c / b : null, TARGET_VS_PEER);
  if (results.instant) {
    targetRows.push(['(e) instant p50 ms', fixed(results.instant.p50, 2), `<= ${TARGET_INSTANT_MS}`, verdict(results.instant.p50 <= TARGET_INSTANT_MS)]);
    targetRows.push(['(e) instant p99 ms', fixed(results.instant.p99, 2), `<= ${TARGET_INSTANT_MS}`, verdict(results.instant.p99 <= TARGET_INSTANT_MS)]);
  }
  if (results.chunked) {
    const bytes = results.chunked.peakRssKiB * 1024;
    targetRows.push(['server peak RSS during (c), MB', fixed(bytes / 1e6, 0), `<= ${TARGET_RSS_BYTES / 1e6}`, verdict(bytes <= TARGET_RSS_BYTES)]);
  }
  console.log(table(['what', 'value', 'target', ''], targetRows, ['l', 'r', 'r', 'l']));
  // (a) and (b) leave the bytes in the page cache; (c) answers only once they are on disk
  const d = rate(results.dd);
  if (c && d) console.log(`context: (c)/(f dd conv=fsync) = ${(c / d).toFixed(2)}: the disk's durable write rate bounds (c), not (a) or (b)`);
}

// ------------------------------------------------------------------ mode: instant-mariadb

/**
 * Waits until every server's buffer pool has at most 5% dirty pages (idle servers sit near 4%; up to 60 s): right after a
 * million-row seed the page cleaner flushes for a while, and (e) would time that write-back, not the
 * steady state the target is about.
 */
async function settleInnodb(connections) {
  const started = performance.now();
  const dirtyShares = async () =>
    Promise.all(connections.map(async (connection) => {
      const [rows] = await connection.query("SHOW GLOBAL STATUS WHERE Variable_name IN ('Innodb_buffer_pool_pages_dirty', 'Innodb_buffer_pool_pages_total')");
      const value = (name) => Number(rows.find((row) => row.Variable_name === name)?.Value ?? 0);
      return value('Innodb_buffer_pool_pages_dirty') / Math.max(1, value('Innodb_buffer_pool_pages_total'));
    }));
  let shares = await dirtyShares();
  const before = shares.map((share) => `${fixed(share * 100, 1)}%`).join(' / ');
  while (shares.some((share) => share > 0.05) && performance.now() - started < 60_000) {
    await sleep(250);
    shares = await dirtyShares();
  }
  const after = shares.map((share) => `${fixed(share * 100, 1)}%`).join(' / ');
  return `dirty pages primary / replica ${before} → ${after} in ${fixed((performance.now() - started) / 1000, 1)} s`;
}

async function instantMariadb() {
  const mysql = (await import('mysql2/promise')).default;
  const { Redis } = await import('ioredis');
  const { seedFiles } = await import('./seed-files.mjs');
  const database = process.env.BENCH_DB_NAME ?? 'filestore_bench';
  if (!/^filestore_[a-z0-9_]+$/.test(database)) throw new Error(`BENCH_DB_NAME must be a scratch name filestore_…, not ${database}`);
  const primaryBase = process.env.BENCH_DB_PRIMARY ?? 'mysql://app:app@127.0.0.1:3316';
  const replicaBase = process.env.BENCH_DB_REPLICA ?? 'mysql://app:app@127.0.0.1:3317';
  const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  const seedRows = Number(process.env.BENCH_SEED_ROWS ?? 1_000_000);
  const redisPrefix = `filestore-bench-${process.pid}:`;
  header('filestore instant upload on the cluster profile (MariaDB)', [
    `database ${database} on ${new URL(primaryBase).host} (replica ${new URL(replicaBase).host}), ${seedRows} seeded rows in files; Redis prefix ${redisPrefix}; file ${(SIZE / MiB).toFixed(0)} MiB`,
  ]);

  const admin = await mysql.createConnection({ uri: primaryBase });
  onCleanup(async () => {
    if (process.env.BENCH_KEEP_DB === '1') log(`keeping database ${database} (BENCH_KEEP_DB=1)`);
    else {
      log(`dropping database ${database}`);
      await admin.query(`DROP DATABASE IF EXISTS \`${database}\``);
    }
    await admin.end();
  });
  await admin.query(`DROP DATABASE IF EXISTS \`${database}\``);
  await admin.query(`CREATE DATABASE \`${database}\` CHARACTER SET utf8mb4`);
  const replica = await mysql.createConnection({ uri: replicaBase });
  onCleanup(() => replica.end());
  for (let i = 0; ; i += 1) {
    const [rows] = await replica.query('SHOW DATABASES LIKE ?', [database]);
    if (rows.length > 0) break;
    if (i > 300) throw new Error(`database ${database} did not reach the replica in 30 s`);
    await sleep(100);
  }
  const redis = new Redis(redisUrl, { lazyConnect: false, maxRetriesPerRequest: 2 });
  onCleanup(async () => {
    let removed = 0;
    for await (const keys of redis.scanStream({ match: `${redisPrefix}*`, count: 500 })) {
      if (keys.length > 0) removed += await redis.del(...keys);
    }
    log(`removed ${removed} Redis key(s) under ${redisPrefix}`);
    redis.disconnect();
  });

  const tmp = await makeTempDir('filestore-bench-');
  const file = path.join(tmp, 'random.bin');
  log(`writing ${SIZE / MiB} MiB of random data`);
  await makeRandomFile(file, SIZE);
  const sha1 = await hashFile(file, 'sha1');
  syncDisks();

  log('starting the server (cluster profile); its migrations create the tables');
  const server = await startFilestore('cluster', path.join(tmp, 'data-cluster'), {
    FILESTORE_PROFILE: 'cluster',
    DB_PRIMARY_URL: `${primaryBase}/${database}`,
    DB_REPLICA_URL: `${replicaBase}/${database}`,
    REDIS_URL: redisUrl,
    REDIS_KEY_PREFIX: redisPrefix,
    S3_ENDPOINT: process.env.S3_ENDPOINT ?? 'http://127.0.0.1:7480',
    S3_BUCKET: process.env.S3_BUCKET ?? 'filestore',
    S3_ACCESS_KEY: process.env.S3_ACCESS_KEY ?? 'devkey',
    S3_SECRET_KEY: process.env.S3_SECRET_KEY ?? 'devsecret',
    S3_REGION: process.env.S3_REGION ?? 'us-east-1',
  });
  onCleanup(() => server.client.close());
  const report = {};
  try {
    log(`seeding ${seedRows} rows into ${database}.files in 5,000-row batches`);
    let shown = 0;
    report.seed = await seedFiles(`${primaryBase}/${database}`, {
      rows: seedRows,
      batch: 5000,
      onProgress: (done, seconds) => {
        if (done - shown >= 200_000 || done === seedRows) {
          shown = done;
          log(`  ${done} rows, ${seconds.toFixed(1)} s`);
        }
      },
    });
    const tReplica = performance.now();
    for (;;) {
      const [[{ n }]] = await replica.query(`SELECT COUNT(*) AS n FROM \`${database}\`.files`);
      if (Number(n) >= seedRows) break;
      if (performance.now() - tReplica > 600_000) throw new Error('the replica did not catch up within 10 minutes');
      await sleep(500);
    }
    report.replicaWait = (performance.now() - tReplica) / 1000;
    await admin.query(`ANALYZE TABLE \`${database}\`.files`);
    const [[sizes]] = await admin.query(
      "SELECT data_length AS data, index_length AS indexes, @@innodb_buffer_pool_size AS pool, @@innodb_flush_method AS flush FROM information_schema.TABLES WHERE table_schema = ? AND table_name = 'files'",
      [database],
    );
    report.sizes = sizes;

    // reference: the point lookup the instant path makes, straight on the primary
    const [[{ maxId }]] = await admin.query(`SELECT MAX(id) AS maxId FROM \`${database}\`.files`);
    const lookups = [];
    for (let i = 0; i < 200; i += 1) {
      const id = 1 + Math.floor(Math.random() * Number(maxId));
      const [[row]] = await admin.query(`SELECT sha1 FROM \`${database}\`.files WHERE id = ?`, [id]);
      if (!row) continue;
      const t0 = performance.now();
      await admin.query(`SELECT * FROM \`${database}\`.files WHERE sha1 = ? LIMIT 1`, [row.sha1]);
      lookups.push(performance.now() - t0);
    }
    report.lookup = { p50: percentile(lookups, 50), p99: percentile(lookups, 99), n: lookups.length };

    log('the first user uploads the content (chunked; cluster profile)');
    const alice = await userToken(server.client, 'bench-alice');
    const m = await measured(() => chunkedUpload(server.client, alice, { file, size: SIZE, sha1, name: 'chunked.bin', folder: '/bench' }), { pid: server.pid });
    report.chunked = { ...m, note: `complete ${fixed(m.result.completeSeconds * 1000, 0)} ms; Redis chunk bitmap` };
    syncDisks();
    log('waiting for InnoDB to write back the dirty pages of the seeding and the upload (steady state)');
    report.settle = await settleInnodb([admin, replica]);

    log(`(e) instant upload by a second user, ${INSTANT_WARMUP} warm-up + ${INSTANT_RUNS} timed`);
    const bob = await userToken(server.client, 'bench-bob');
    report.instant = await instantSeries(server.client, bob, file, { size: SIZE, sha1, folder: '/instant', pid: server.pid });
    const [[{ rows }]] = await admin.query(`SELECT COUNT(*) AS \`rows\` FROM \`${database}\`.files`);
    report.rows = Number(rows);
  } finally {
    await stopFilestore(server);
  }

  console.log(`\n${loadLine()} (at end)`);
  console.log(`\nseeding: ${report.seed.rows} rows in ${fixed(report.seed.seconds, 1)} s (${Math.round(report.seed.rowsPerSecond)} rows/s, 5,000-row batches); replica caught up ${fixed(report.replicaWait, 1)} s later; files now holds ${report.rows} rows`);
  const mb = (bytes) => fixed(Number(bytes) / MiB, 0);
  console.log(`files: ${mb(report.sizes.data)} MiB clustered (primary key), ${mb(report.sizes.indexes)} MiB secondary indexes (sha1 unique, status); primary's innodb_buffer_pool_size ${mb(report.sizes.pool)} MiB, flush method ${report.sizes.flush}`);
  console.log(`InnoDB write-back before (e): ${report.settle}`);
  console.log(`point SELECT by sha1 on the primary (reference): p50 ${fixed(report.lookup.p50, 2)} ms, p99 ${fixed(report.lookup.p99, 2)} ms (n=${report.lookup.n})`);
  console.log('');
  console.log(table(THROUGHPUT_HEADER, [throughputRow('chunked upload, cluster profile (context)', report.chunked)], THROUGHPUT_ALIGN));
  console.log(details('chunked upload, cluster profile', report.chunked));
  const i = report.instant;
  console.log(`\n(e) instant upload on MariaDB with ${report.rows} rows in files, POST /api/uploads → 201 of the proof, n=${i.times.length} after ${INSTANT_WARMUP} warm-up`);
  console.log(table(
    ['p50 ms', 'p99 ms', 'max ms', 'mean ms', 'target', ''],
    [[fixed(i.p50, 2), fixed(i.p99, 2), fixed(i.max, 2), fixed(i.mean, 2), `<= ${TARGET_INSTANT_MS}`, `p50 ${verdict(i.p50 <= TARGET_INSTANT_MS)}, p99 ${verdict(i.p99 <= TARGET_INSTANT_MS)}`]],
    ['r', 'r', 'r', 'r', 'r', 'l'],
  ));
  console.log(phaseLine(i));
}

// ------------------------------------------------------------------ main

const modes = {
  upload: uploadBenchmark,
  'instant-mariadb': instantMariadb,
  tiers: async () => (await import('./tiers.mjs')).tiersBenchmark(),
};
let exitCode = 0;
try {
  const mode = modes[MODE];
  if (!mode) throw new Error(`unknown mode "${MODE}"; one of: ${Object.keys(modes).join(', ')}`);
  await mode();
} catch (error) {
  process.stderr.write(`\nbench: FAILED: ${error.stack ?? error}\n`);
  exitCode = 1;
} finally {
  await cleanup();
}
process.exit(exitCode);
