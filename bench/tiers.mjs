// Tiers benchmark (cluster profile, against the services of `make services`), one run, side by side:
//   1. transfer of one random file (BENCH_SIZE_MB, default 1024) local → Ceph RGW by filestore's worker
//      (BullMQ job 'active' → its log line 'blob moved to s3') vs a bare @aws-sdk/lib-storage multipart
//      upload of the same file from this process (16 MiB parts, queueSize 4, fs.createReadStream body);
//   2. downloads with curl: GET /api/files/:id/content on the local tier, the same on the s3 tier, and the
//      object straight from RGW (sigv4);
//   3. peak RSS of the worker during the transfer and of the API during each download.
// The memstore OSD holds ~2 GiB: only one copy of the file is in the bucket at any time (the bare object
// is deleted, and RGW's garbage collected, before the worker starts).
//
//   node bench/run.mjs tiers       (make bench BENCH_MODE=tiers)
// Environment: BENCH_SIZE_MB, BENCH_CPU_PROF=1 (worker under --cpu-prof, summarised), BENCH_PERF=1 (perf record
// -a during (1a), (1b) and (2b), with the worker, bare child and API under --perf-basic-prof), BENCH_TIERS_DB
// (scratch database, default filestore_bench_tiers), S3_* / REDIS_URL as in .services.env (defaults built in).
// Started processes, temp files, S3 objects, Redis keys under the random prefix and the database are
// removed at the end, also on failure.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { summarize } from './cpu-profile-summary.mjs';
import {
  API_START, MiB, REPO_ROOT, expectStatus, fixed, freePort, hashFile, httpClient, loadLine, makeRandomFile, makeTempDir, mibps, onCleanup, run, sleep, startChild, stopChild, syncDisks, table, touchFreeMemory, waitForPort, which,
} from './lib.mjs';
import { busyShare, machineCpu, measured, rssKiB, sampleRss, threadCpu } from './proc.mjs';
import {
  S3, assertOsdHasRoom, bareInChild, cephCpu, collectRgwGarbage, digestOnly, measuredCeph, perfNodeFlags, perfRecord, rgwPid, s3Kit,
} from './tiers-s3.mjs';
import { scratchDatabase, scratchRedisPrefix } from './scratch-cluster.mjs';

const SIZE = Math.round(Number(process.env.BENCH_SIZE_MB ?? 1024) * MiB);
const TARGET_VS_BARE = 0.8;
const CPU_PROF = process.env.BENCH_CPU_PROF === '1';
const PERF = process.env.BENCH_PERF === '1' && which('perf');
const DATABASE = process.env.BENCH_TIERS_DB ?? 'filestore_bench_tiers';
const PRIMARY = process.env.BENCH_DB_PRIMARY ?? 'mysql://app:app@127.0.0.1:3316';
const REPLICA = process.env.BENCH_DB_REPLICA ?? 'mysql://app:app@127.0.0.1:3317';
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const log = (message) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);

/** The environment without anything filestore reads (a shell with .services.env loaded must not leak in). */
function cleanEnv(overrides) {
  const ours = /^(FILESTORE_|DB_|REDIS_|S3_|JWT_|DATA_DIR$|PORT$|HOST$|LOG_LEVEL$|WORKER_|GC_|VERIFY_|DEDUPE_SCOPE$|MAX_UPLOAD_BYTES$|UPLOAD_TTL_SECONDS$|READ_YOUR_WRITES_SECONDS$|LOGIN_|ACCESS_TOKEN_|REFRESH_TOKEN_|ADMIN_USERS$)/;
  return { ...Object.fromEntries(Object.entries(process.env).filter(([key]) => !ours.test(key))), ...overrides };
}

// ------------------------------------------------------------------ curl

async function curlDownload(url, { token, sigv4 = false } = {}) {
  const args = ['-sS', '-o', '/dev/null', '-w', '%{http_code} %{size_download} %{speed_download} %{time_total} %{time_starttransfer}'];
  if (token) args.push('-H', `Authorization: Bearer ${token}`);
  if (sigv4) args.push('--aws-sigv4', `aws:amz:${S3.region}:s3`, '--user', `${S3.accessKeyId}:${S3.secretAccessKey}`, '-H', 'x-amz-content-sha256: UNSIGNED-PAYLOAD');
  const r = await run('curl', [...args, url]);
  const [code, bytes, speed, total, ttfb] = r.stdout.trim().split(' ').map(Number);
  if (r.code !== 0 || code !== 200 || bytes !== SIZE) throw new Error(`curl ${url}: exit ${r.code}, HTTP ${code}, ${bytes} bytes: ${r.stderr.slice(0, 300)}`);
  return { speed, total, ttfb };
}

async function curlUpload(port, token, file) {
  const r = await run('curl', [
    '-sS', '-w', '\n%{http_code} %{time_total}', '-H', `Authorization: Bearer ${token}`,
    '-F', `file=@${file};filename=tiers.bin`, '-F', 'folder=/bench', `http://127.0.0.1:${port}/api/files`,
  ]);
  const lines = r.stdout.trim().split('\n');
  const [code, total] = lines.pop().split(' ').map(Number);
  if (r.code !== 0 || code !== 201) throw new Error(`POST /api/files: exit ${r.code}, HTTP ${code}: ${lines.join('\n').slice(0, 300)} ${r.stderr.slice(0, 300)}`);
  return { file: JSON.parse(lines.join('\n')), seconds: total };
}

// ------------------------------------------------------------------ the benchmark

export async function tiersBenchmark() {
  const { QueueEvents } = await import('bullmq');
  if (!/^filestore_[a-z0-9_]+$/.test(DATABASE)) throw new Error(`BENCH_TIERS_DB must be a scratch name filestore_…, not ${DATABASE}`);
  if (!which('curl')) throw new Error('curl is not installed');
  const prefix = `fsbench-tiers-${randomBytes(4).toString('hex')}:`;
  const bareKey = `bench-tiers-${randomBytes(4).toString('hex')}/bare.bin`;
  const loadStart = loadLine();
  const rgwStart = rgwPid();
  console.log('\n=== filestore tiers benchmark: local → Ceph RGW transfer, downloads per tier ===');
  console.log(`${new Date().toISOString()}  node ${process.version}  ${os.cpus()[0]?.model ?? ''}`);
  console.log(`${loadStart} (at start)`);
  console.log(`file ${(SIZE / MiB).toFixed(0)} MiB random; S3 ${S3.endpoint} bucket ${S3.bucket}; database ${DATABASE}; Redis prefix ${prefix}; radosgw pid ${rgwStart}`);

  touchFreeMemory(log);
  const kit = await s3Kit();
  // garbage of earlier deletes (anyone's) still occupies the OSD for 30-60 s: collect it, then check for room
  await collectRgwGarbage();
  console.log(`Ceph health: ${await assertOsdHasRoom()}`);
  const bucketBefore = await kit.list('');

  const { admin } = await scratchDatabase(DATABASE, { primary: PRIMARY, replica: REPLICA });
  await scratchRedisPrefix(REDIS_URL, prefix);

  const tmp = await makeTempDir('filestore-bench-tiers-');
  const file = path.join(tmp, 'random.bin');
  const dataDir = path.join(tmp, 'data');
  log(`writing ${SIZE / MiB} MiB of random data to ${file}`);
  await makeRandomFile(file, SIZE);
  const sha1 = await hashFile(file, 'sha1');
  syncDisks();
  // everything under blobs/<sha1>/ is ours: the content is random. Other test runs stop or freeze
  // radosgw for fault tests: an unreachable gateway is retried for up to 3 minutes, not given up on.
  const purgeOurs = async () => {
    for (let attempt = 1; ; attempt += 1) {
      try {
        const a = await kit.purge(`blobs/${sha1}/`);
        const b = await kit.purge(bareKey);
        return { objects: a.objects + b.objects, multipart: a.multipart + b.multipart };
      } catch (error) {
        if (attempt >= 60) throw error;
        if (attempt === 1) log(`S3 cleanup: ${error.name ?? error.code ?? error.message}; radosgw pid ${rgwPid()} (was ${rgwStart}); retrying every 3 s`);
        await sleep(3000);
      }
    }
  };
  onCleanup(async () => {
    const purged = await purgeOurs();
    if (purged.objects + purged.multipart > 0) log(`deleted ${purged.objects} S3 object(s), aborted ${purged.multipart} multipart upload(s) (cleanup)`);
  });

  const env = (extra) => cleanEnv({
    FILESTORE_PROFILE: 'cluster', HOST: '127.0.0.1', DATA_DIR: dataDir, LOG_LEVEL: 'info', ACCESS_TOKEN_TTL_SECONDS: '86400',
    DB_PRIMARY_URL: `${PRIMARY}/${DATABASE}`, DB_REPLICA_URL: `${REPLICA}/${DATABASE}`, REDIS_URL, REDIS_KEY_PREFIX: prefix,
    S3_ENDPOINT: S3.endpoint, S3_BUCKET: S3.bucket, S3_ACCESS_KEY: S3.accessKeyId, S3_SECRET_KEY: S3.secretAccessKey, S3_REGION: S3.region,
    ...extra,
  });
  const r = {};
  let api = null;
  let worker = null;
  let client = null;
  let queueEvents = null;
  const profileDir = CPU_PROF ? await makeTempDir('filestore-bench-tiers-prof-') : null;
  const perfDir = PERF ? await makeTempDir('filestore-bench-tiers-perf-') : null;
  try {
    // ---- API alone: the upload lands on the local tier, its transfer job waits for a worker
    const apiPort = await freePort();
    log('starting the API (cluster profile); its migrations create the tables');
    const apiArgs = perfDir ? perfNodeFlags(perfDir, 'api') : [];
    api = startChild('filestore-api', API_START, apiArgs, { cwd: REPO_ROOT, env: env({ PORT: String(apiPort), NODE: process.execPath }) });
    if (perfDir) onCleanup(() => fs.rmSync(`/tmp/perf-${api.pid}.map`, { force: true }));
    await waitForPort(apiPort, api, 60_000);
    client = httpClient(apiPort);
    expectStatus(await client.request('POST', '/api/auth/register', { json: { username: 'bench-tiers', password: 'bench-password-1' } }), 'register', 201);
    const token = expectStatus(await client.request('POST', '/api/auth/login', { json: { username: 'bench-tiers', password: 'bench-password-1' } }), 'login', 200).body.accessToken;

    log('uploading the file through the API (curl -F, POST /api/files)');
    r.upload = await curlUpload(apiPort, token, file);
    const fileId = r.upload.file.id;
    if (r.upload.file.sha1 !== sha1) throw new Error(`uploaded file has sha1 ${r.upload.file.sha1}, expected ${sha1}`);
    const row = async () => (await admin.query(`SELECT id, tier, location FROM \`${DATABASE}\`.files WHERE sha1 = ?`, [sha1]))[0][0];
    if ((await row())?.tier !== 'local') throw new Error(`expected the file on the local tier, got ${JSON.stringify(await row())}`);
    syncDisks();
    const contentUrl = `http://127.0.0.1:${apiPort}/api/files/${fileId}/content`;

    log('(2a) download from the local tier through the API');
    r.getLocal = await measuredCeph(() => curlDownload(contentUrl, { token }), { pid: api.pid });

    // ---- bare lib-storage upload of the same file, then its object is deleted and RGW's garbage collected
    log(`(1b) bare @aws-sdk/lib-storage upload to ${bareKey}`);
    r.bare = await bareInChild(file, bareKey, SIZE, perfDir);
    await kit.purge(bareKey);
    log('deleted the bare object; collecting RGW garbage so the memstore OSD has room for the next copy');
    r.gc = await collectRgwGarbage();
    await assertOsdHasRoom();
    log('(ref) SHA-1 + per-part MD5 of the file in this process, no network (the hashing the worker adds)');
    r.digest = await measured(() => digestOnly(file));

    // ---- worker: job 'active' (BullMQ event, Redis time) → 'blob moved to s3' (its log line, pino time)
    queueEvents = new QueueEvents('transfer', { connection: { url: REDIS_URL }, prefix: `${prefix}bull` });
    await queueEvents.waitUntilReady();
    const transfer = {};
    const done = new Promise((resolve, reject) => {
      queueEvents.on('active', (_event, id) => {
        transfer.perf ??= perfDir ? perfRecord(worker.pid, 'worker', perfDir) : null;
        transfer.activeAt = Number(String(id).split('-')[0]) || Date.now();
        transfer.cpu0 = threadCpu(worker.pid);
        transfer.machine0 = machineCpu();
        transfer.ceph0 = cephCpu();
        transfer.rssAtStartKiB = rssKiB(worker.pid);
      });
      queueEvents.on('failed', ({ failedReason }) => reject(new Error(`transfer job failed: ${failedReason}`)));
      transfer.reject = reject;
      transfer.resolve = resolve;
    });
    const metricsPort = await freePort();
    const flags = CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`, '--cpu-prof-name=worker.cpuprofile'] : [];
    if (perfDir) flags.push(...perfNodeFlags(perfDir, 'worker'));
    log('(1a) starting the worker; it takes the queued transfer job');
    worker = startChild('filestore-worker', process.execPath, [...flags, path.join(REPO_ROOT, 'dist', 'workers', 'main.js')], {
      cwd: REPO_ROOT, env: env({ WORKER_METRICS_PORT: String(metricsPort) }),
    });
    const workerRss = sampleRss(() => [worker.pid], 50);
    if (perfDir) onCleanup(() => fs.rmSync(`/tmp/perf-${worker.pid}.map`, { force: true }));
    let pending = '';
    worker.stdout.on('data', (data) => {
      pending += data;
      for (let nl = pending.indexOf('\n'); nl >= 0; nl = pending.indexOf('\n')) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        if (!line.includes('blob moved to s3')) continue;
        const entry = JSON.parse(line);
        Object.assign(transfer, { line: entry, seenAt: Date.now(), cpu1: threadCpu(worker.pid), machine1: machineCpu(), ceph1: cephCpu() });
        transfer.resolve();
      }
    });
    worker.exited.then(({ code, signal }) => transfer.reject(new Error(`worker exited (${code ?? signal}):\n${worker.outputTail()}`)));
    const timeout = setTimeout(() => transfer.reject(new Error(`no 'blob moved to s3' within 15 min:\n${worker.outputTail()}`)), 900_000);
    await done.finally(() => clearTimeout(timeout));
    transfer.perfReport = await transfer.perf?.stop();
    transfer.peakRssKiB = workerRss.stop().peakKiB;
    r.transfer = transfer;
    if ((await row())?.tier !== 's3') throw new Error(`expected the file on the s3 tier now, got ${JSON.stringify(await row())}`);
    const key = (await row()).location;
    r.objects = await kit.list(`blobs/${sha1}/`);
    syncDisks();

    log('(2b) download from the s3 tier through the API');
    const apiPerf = perfDir ? perfRecord(api.pid, 'API during (2b)', perfDir) : null;
    r.getS3 = await measuredCeph(() => curlDownload(contentUrl, { token }), { pid: api.pid });
    r.getS3.perfReport = await apiPerf?.stop();
    log('(2c) the same object straight from RGW (curl --aws-sigv4)');
    r.getRgw = await measuredCeph(() => curlDownload(`${S3.endpoint}/${S3.bucket}/${key}`, { sigv4: true }));
  } finally {
    await queueEvents?.close().catch(() => {});
    client?.close();
    for (const child of [worker, api]) if (child) await stopChild(child);
    if (rgwPid() !== rgwStart) log(`radosgw pid ${rgwStart} → ${rgwPid()}: restarted during the run (another test run's fault injection?)`);
    r.purged = await purgeOurs().catch((error) => ({ error: error.message }));
    // give the OSD's RAM back to the other runs now rather than after RGW's GC delay
    if (!r.purged.error) r.gcAfter = await collectRgwGarbage().catch((error) => `failed: ${error.message}`);
  }
  r.bucketAfter = await kit.list('');
  const loadEnd = loadLine();
  const rgwEnd = rgwPid();
  report(r, { bucketBefore, loadStart, loadEnd, rgwStart, rgwEnd });
  for (const text of [r.transfer.perfReport, r.bare.perfReport, r.getS3.perfReport]) if (text) console.log(`\n${text}`);
  if (CPU_PROF) {
    const prof = path.join(profileDir, 'worker.cpuprofile');
    if (fs.existsSync(prof)) {
      console.log('\nCPU profile of the worker, main thread, its whole life (--cpu-prof)');
      console.log(summarize(prof, { top: 25, inclusiveNames: ['transform', 'update', 'store', '__doConcurrentUpload', 'digest'] }));
    } else log('no worker CPU profile (did it exit cleanly?)');
  }
}

// ------------------------------------------------------------------ report

function report(r, { bucketBefore, loadStart, loadEnd, rgwStart, rgwEnd }) {
  const t = r.transfer;
  // without the 'active' event (missed), fall back to the processor's own start
  const transferSeconds = (t.line.time - (t.activeAt ?? t.line.time - t.line.ms)) / 1000;
  t.cpu0 ??= { main: 0, others: 0 };
  t.machine0 ??= t.machine1;
  const workerMsSeconds = t.line.ms / 1000;
  const cpu = { main: t.cpu1.main - t.cpu0.main, others: t.cpu1.others - t.cpu0.others };
  const mb = (kib) => (kib ? fixed(kib / 1024, 0) : '');
  const rate = (seconds) => fixed(mibps(SIZE, seconds));
  const dl = (label, m, server) => [
    label, fixed(m.result.speed / MiB), fixed(m.result.total, 2), server ? fixed(m.serverCpu, 2) : '', fixed(m.clientCpu, 2), fixed(m.cephCpu, 2),
    `${Math.round(m.busy * 100)}%`, server ? `${mb(m.peakRssKiB)} (${mb(m.startRssKiB)})` : '', `ttfb ${fixed(m.result.ttfb * 1000, 0)} ms`,
  ];
  console.log(`\n${loadEnd} (at end); radosgw pid ${rgwEnd}${rgwEnd === rgwStart ? ' (unchanged)' : ` (was ${rgwStart}: restarted during the run)`}`);
  console.log(`context: upload through the API (curl -F) ${fixed(r.upload.seconds, 2)} s, ${rate(r.upload.seconds)} MiB/s; RGW garbage between (1b) and (1a): ${r.gc}`);
  console.log(`\n1. transfer to Ceph RGW, ${(SIZE / MiB).toFixed(0)} MiB, 16 MiB parts, queueSize 4. MiB/s = 2^20 B/s. machine busy = share of all ${os.cpus().length} cores busy (everyone's work)`);
  console.log(table(
    ['stage', 'MiB/s', 'seconds', 'CPU s (main+other thr.)', 'RGW+OSD CPU s', 'machine busy', 'peak RSS MiB (at start)', 'notes'],
    [
      ['(1a) filestore worker, job active → blob moved to s3', rate(transferSeconds), fixed(transferSeconds, 2), `${fixed(cpu.main + cpu.others, 2)} (${fixed(cpu.main, 2)}+${fixed(cpu.others, 2)})`, fixed(t.ceph1 - (t.ceph0 ?? t.ceph1), 2),
        `${Math.round(busyShare(t.machine0, t.machine1) * 100)}%`, `${mb(t.peakRssKiB)} (${mb(t.rssAtStartKiB)})`, `processor's own ms ${t.line.ms} → ${rate(workerMsSeconds)} MiB/s`],
      ['(1b) bare lib-storage, fs.createReadStream, own node process', rate(r.bare.seconds), fixed(r.bare.seconds, 2),
        `${fixed(r.bare.cpu.main + r.bare.cpu.others, 2)} (${fixed(r.bare.cpu.main, 2)}+${fixed(r.bare.cpu.others, 2)})`, fixed(r.bare.cephCpu, 2),
        `${Math.round(r.bare.busy * 100)}%`, `${mb(r.bare.peakRssKiB)} (${mb(r.bare.startRssKiB)})`, 'new Upload() → done() + HEAD'],
      ['(ref) SHA-1 + MD5 per part only, this process, no network', rate(r.digest.seconds), fixed(r.digest.seconds, 2), fixed(r.digest.clientCpu, 2), '',
        `${Math.round(r.digest.busy * 100)}%`, '', 'the hashing (1a) does on top of (1b), one thread'],
    ],
    ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'l'],
  ));
  console.log(`\n2./3. downloads, curl -o /dev/null (MiB/s from curl's speed_download); server = the API process`);
  console.log(table(
    ['download', 'MiB/s', 'seconds', 'API CPU s', 'client CPU s', 'RGW+OSD CPU s', 'machine busy', 'API peak RSS MiB (before)', 'notes'],
    [dl('(2a) API GET content, local tier', r.getLocal, true), dl('(2b) API GET content, s3 tier', r.getS3, true), dl('(2c) RGW GET object, curl --aws-sigv4', r.getRgw, false)],
    ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'l'],
  ));
  for (const [label, m] of [['(2a)', r.getLocal], ['(2b)', r.getS3]]) {
    const io = m.serverIo;
    if (!io) continue;
    const avg = (bytes, n) => (n > 0 ? `${fixed(bytes / n / 1024, 1)} KiB avg` : '');
    console.log(`${label} API syscalls (/proc/pid/io, sockets included): ${io.syscr} read-family ${fixed(io.rchar / MiB, 0)} MiB ${avg(io.rchar, io.syscr)}; ` +
      `${io.syscw} write-family ${fixed(io.wchar / MiB, 0)} MiB ${avg(io.wchar, io.syscw)}; CPU main thread ${fixed(m.serverThreads.main, 2)} s, other threads ${fixed(m.serverThreads.others, 2)} s`);
  }
  const ratio = mibps(SIZE, transferSeconds) / mibps(SIZE, r.bare.seconds);
  console.log('\nratios');
  console.log(table(['what', 'value', 'target', ''], [
    ['(1a)/(1b) transfer, filestore vs bare lib-storage', fixed(ratio, 2), `>= ${TARGET_VS_BARE}`, ratio >= TARGET_VS_BARE ? 'MET' : 'MISSED'],
    ['(1a)/(1b) by the processor\'s own ms', fixed(r.bare.seconds / workerMsSeconds, 2), '', ''],
    ['(2b)/(2c) API s3-tier download vs RGW direct', fixed(r.getS3.result.speed / r.getRgw.result.speed, 2), '', ''],
    ['(2a)/(2c) API local-tier download vs RGW direct', fixed(r.getLocal.result.speed / r.getRgw.result.speed, 2), '', ''],
  ], ['l', 'r', 'r', 'l']));
  const purged = r.purged.error ? `purge FAILED: ${r.purged.error}` : `deleted ${r.purged.objects} object(s) of ours (${r.objects.join(', ')} and the bare one earlier), aborted ${r.purged.multipart} multipart upload(s)`;
  const before = new Set(bucketBefore);
  const after = new Set(r.bucketAfter);
  const added = r.bucketAfter.filter((k) => !before.has(k));
  const gone = bucketBefore.filter((k) => !after.has(k));
  const ours = added.filter((k) => r.objects.includes(k) || k.startsWith('bench-tiers-'));
  console.log(`\nS3 cleanup: ${purged}; RGW garbage then: ${r.gcAfter}; bucket ${S3.bucket}: ${before.size} object(s) before, ${after.size} after` +
    (added.length + gone.length === 0 ? ' (the same keys)' : `; others' test runs meanwhile added ${added.length - ours.length} (${added.join(', ')}), removed ${gone.length}; left of ours: ${ours.length}`));
}
