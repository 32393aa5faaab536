// S3/Ceph side of the tiers benchmark (bench/tiers.mjs): this process's own S3 client (listing, purging,
// the bare lib-storage reference upload), radosgw/ceph-osd CPU, RGW garbage collection, the digest-only
// reference, and optional `perf record` of a process during a stage (BENCH_PERF=1).
// Run as `node bench/tiers-s3.mjs bare <file> <key> <size>` it is the child that does the bare upload.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MiB, fixed, onCleanup, run, sleep, startChild, which } from './lib.mjs';
import { busyShare, cpuSeconds, machineCpu, measured, rssKiB, sampleRss, threadCpu } from './proc.mjs';

export const PART_SIZE = 16 * MiB;
export const QUEUE_SIZE = 4;
const log = (message) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);

export const S3 = {
  endpoint: process.env.S3_ENDPOINT ?? 'http://127.0.0.1:7480',
  bucket: process.env.S3_BUCKET ?? 'filestore',
  accessKeyId: process.env.S3_ACCESS_KEY ?? 'devkey',
  secretAccessKey: process.env.S3_SECRET_KEY ?? 'devsecret',
  region: process.env.S3_REGION ?? 'us-east-1',
};
const CEPH_CONF = process.env.CEPH_CONF ?? '/tmp/filestore-ceph-rgw/ceph.conf';
const CEPH_PIDS = '/tmp/filestore-ceph-rgw/pids';

const cephPid = (name) => {
  try {
    return Number(fs.readFileSync(path.join(CEPH_PIDS, `${name}.pid`), 'utf8').trim());
  } catch {
    return null;
  }
};
export const rgwPid = () => cephPid('client.rgw') ?? 'unknown';
/** CPU seconds used so far by radosgw + ceph-osd (the S3 side of every stage). */
export const cephCpu = () => ['client.rgw', 'osd.0'].map(cephPid).reduce((sum, pid) => sum + (pid ? cpuSeconds(pid) : 0), 0);
/** measured() plus the CPU radosgw + ceph-osd used meanwhile. */
export async function measuredCeph(fn, options) {
  const c0 = cephCpu();
  const m = await measured(fn, options);
  return { ...m, cephCpu: cephCpu() - c0 };
}

// ------------------------------------------------------------------ S3 helpers (this process's own client)

export async function s3Kit() {
  const s3 = await import('@aws-sdk/client-s3');
  const { Upload } = await import('@aws-sdk/lib-storage');
  const client = new s3.S3Client({
    endpoint: S3.endpoint, region: S3.region, forcePathStyle: true,
    credentials: { accessKeyId: S3.accessKeyId, secretAccessKey: S3.secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED',
  });
  const Bucket = S3.bucket;
  async function list(Prefix) {
    const keys = [];
    let ContinuationToken;
    do {
      const page = await client.send(new s3.ListObjectsV2Command({ Bucket, Prefix, ContinuationToken }));
      keys.push(...(page.Contents ?? []).map((o) => o.Key));
      ContinuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (ContinuationToken);
    return keys;
  }
  /** Deletes every object and aborts every multipart upload under `prefix`; resolves the number of each. */
  async function purge(prefix) {
    const keys = await list(prefix);
    for (const Key of keys) await client.send(new s3.DeleteObjectCommand({ Bucket, Key }));
    const multipart = await client.send(new s3.ListMultipartUploadsCommand({ Bucket, Prefix: prefix }));
    for (const u of multipart.Uploads ?? []) await client.send(new s3.AbortMultipartUploadCommand({ Bucket, Key: u.Key, UploadId: u.UploadId }));
    return { objects: keys.length, multipart: (multipart.Uploads ?? []).length };
  }
  /** The bare reference: lib-storage multipart upload, the file as an fs.ReadStream. */
  async function bareUpload(file, Key, size) {
    const upload = new Upload({
      client, params: { Bucket, Key, Body: fs.createReadStream(file) }, partSize: PART_SIZE, queueSize: QUEUE_SIZE, leavePartsOnError: false,
    });
    await upload.done();
    const head = await client.send(new s3.HeadObjectCommand({ Bucket, Key }));
    if (Number(head.ContentLength) !== size) throw new Error(`bare upload stored ${head.ContentLength} bytes, expected ${size}`);
  }
  return { client, list, purge, bareUpload };
}

/**
 * The memstore OSD holds ~2 GiB for everyone; once full, every write to it blocks (no error), other
 * test runs' included. Refuses to start on a full or nearly full OSD (`ceph health`).
 */
export async function assertOsdHasRoom() {
  if (!which('ceph') || !fs.existsSync(CEPH_CONF)) return 'ceph CLI or ceph.conf not found: OSD fill not checked';
  const health = await run('timeout', ['15', 'ceph', '-c', CEPH_CONF, 'health']);
  if (/full/i.test(health.stdout)) throw new Error(`Ceph reports ${health.stdout.trim()}: not adding 1 GiB objects now`);
  return health.stdout.trim();
}

/** RGW deletes the tail objects of a deleted object only after its GC delay (30 s here); do it now. */
export async function collectRgwGarbage() {
  if (which('radosgw-admin') && fs.existsSync(CEPH_CONF)) {
    const gc = await run('timeout', ['120', 'radosgw-admin', '-c', CEPH_CONF, 'gc', 'process', '--include-all']);
    if (gc.code === 0) return `radosgw-admin gc process --include-all, ${fixed(gc.seconds, 1)} s`;
    log(`radosgw-admin gc process failed (${gc.code}): ${gc.stderr.slice(0, 200)}; waiting 65 s for RGW's own GC`);
  }
  await sleep(65_000);
  return 'waited 65 s for RGW GC';
}

/** What S3BlobStore.store hashes besides sending: SHA-1 of the whole and MD5 per 16 MiB part, 64 KiB reads. */
export async function digestOnly(file) {
  const sha1 = createHash('sha1');
  let md5 = createHash('md5');
  let partBytes = 0;
  for await (const chunk of fs.createReadStream(file)) {
    sha1.update(chunk);
    for (let offset = 0; offset < chunk.length; ) {
      if (partBytes === PART_SIZE) {
        md5.digest();
        md5 = createHash('md5');
        partBytes = 0;
      }
      const take = Math.min(PART_SIZE - partBytes, chunk.length - offset);
      md5.update(chunk.subarray(offset, offset + take));
      partBytes += take;
      offset += take;
    }
  }
  md5.digest();
  return sha1.digest('hex');
}

/**
 * (1b) in a node child of its own (this file, argv "bare"), so its CPU per thread and RSS are measured
 * like the worker's: it loads the SDK, says "ready", uploads on "go", answers {"seconds"}, exits on EOF.
 */
export async function bareInChild(file, key, size, perfDir) {
  const flags = perfDir ? perfNodeFlags(perfDir, 'bare') : [];
  const child = startChild('bare-lib-storage', process.execPath, [...flags, import.meta.filename, 'bare', file, key, String(size)], { stdio: ['pipe', 'pipe', 'pipe'] });
  if (perfDir) onCleanup(() => fs.rmSync(`/tmp/perf-${child.pid}.map`, { force: true }));
  const lines = [];
  let wake = () => {};
  let pending = '';
  child.stdout.on('data', (data) => {
    pending += data;
    for (let nl = pending.indexOf('\n'); nl >= 0; nl = pending.indexOf('\n')) {
      lines.push(pending.slice(0, nl));
      pending = pending.slice(nl + 1);
      wake();
    }
  });
  const nextLine = async () => {
    while (lines.length === 0) {
      if (child.exitCode !== null) throw new Error(`bare upload child exited (${child.exitCode}):\n${child.outputTail()}`);
      await new Promise((resolve) => {
        wake = resolve;
        setTimeout(resolve, 500);
      });
    }
    return lines.shift();
  };
  if ((await nextLine()) !== 'ready') throw new Error(`bare upload child: unexpected output\n${child.outputTail()}`);
  const rss = sampleRss(() => [child.pid], 50);
  const perf = perfDir ? perfRecord(child.pid, 'bare', perfDir) : null;
  const [cpu0, machine0, ceph0, rss0] = [threadCpu(child.pid), machineCpu(), cephCpu(), rssKiB(child.pid)];
  child.stdin.write('go\n');
  // the SDK has no overall timeout: a gateway that stops answering (full OSD, frozen radosgw) must not hang the bench
  const answer = JSON.parse(await Promise.race([nextLine(), sleep(900_000).then(() => JSON.stringify({ error: 'no answer within 15 min' }))]));
  const [cpu1, machine1, ceph1] = [threadCpu(child.pid), machineCpu(), cephCpu()];
  const { peakKiB } = rss.stop();
  const perfReport = await perf?.stop();
  child.stdin.end();
  await child.exited;
  if (answer.error) throw new Error(`bare upload failed: ${answer.error}`);
  return {
    seconds: answer.seconds, busy: busyShare(machine0, machine1), cephCpu: ceph1 - ceph0, peakRssKiB: peakKiB, startRssKiB: rss0,
    cpu: { main: cpu1.main - cpu0.main, others: cpu1.others - cpu0.others }, perfReport,
  };
}

/**
 * node flags for JS names in perf (/tmp/perf-<pid>.map, removed by the caller); --perf-basic-prof also
 * makes V8 write an isolate-…-v8.log into the cwd (the repo): it goes to `dir` instead.
 */
export const perfNodeFlags = (dir, name) => ['--perf-basic-prof', '--no-logfile-per-isolate', `--logfile=${path.join(dir, `v8-${name}.log`)}`];

// kinds of samples, first match wins (perf report lines: tid:comm, object, [k]/[.] symbol)
const CATEGORIES = [
  ['SHA-1 + MD5 (the ETag/sha1 digest of S3BlobStore.store)', (l) => /sha1_block|md5_block/.test(l)],
  ['SHA-256 (SigV4 payload hash: plain http, so the SDK signs the body)', (l) => /sha256_block/.test(l)],
  ['V8 garbage collection (marking, sweeping, scavenges)', (l) => /v8::internal::.*(Mark|Sweep|Scaveng|Evacuat|Heap|Compact|GC|Remembered|Slot)/.test(l)],
  ['memmove/memcpy in user space (Buffer copies)', (l) => /\[\.\]\s+__mem(move|cpy)/.test(l)],
  ['kernel (syscalls: file reads, sockets; page copies)', (l) => /\[k\]/.test(l)],
  ['everything else (JS, V8 runtime, libuv, OpenSSL other)', () => true],
];

/**
 * `perf record -a -e cpu-clock` (the whole machine: on 2 cores everyone competes) until stop(), which
 * resolves the report as text: the machine's samples by command, and `pid`'s threads (main = tid pid)
 * with their hottest symbols (JS names with --perf-basic-prof). Shares are of all samples (2 cores = 200%/2).
 */
export function perfRecord(pid, name, dir) {
  const file = path.join(dir, `${name}.perf.data`);
  const child = startChild(`perf-${name}`, 'perf', ['record', '-a', '-e', 'cpu-clock', '-F', '499', '-o', file]);
  const t0 = performance.now();
  const rowsOf = async (...args) =>
    (await run('perf', ['report', '-i', file, '--stdio', '--no-children', ...args])).stdout.split('\n').filter((l) => /^\s+[\d.]+%/.test(l));
  return {
    async stop() {
      let tids = new Set([String(pid)]);
      try {
        tids = new Set(fs.readdirSync(`/proc/${pid}/task`));
      } catch {
        /* exited: main thread only */
      }
      try {
        process.kill(child.pid, 'SIGINT');
      } catch {
        /* gone */
      }
      const cpuSecondsPerPercent = ((performance.now() - t0) / 1000) * (os.cpus().length / 100);
      await child.exited;
      const tidOf = (line) => /^\s+[\d.]+%\s+(\d+):/.exec(line)?.[1];
      const byComm = (await rowsOf('--sort', 'comm')).slice(0, 10);
      let main = 0;
      let others = 0;
      for (const line of await rowsOf('--sort', 'pid')) {
        const tid = tidOf(line);
        if (!tids.has(tid)) continue;
        if (tid === String(pid)) main += Number.parseFloat(line);
        else others += Number.parseFloat(line);
      }
      const all = (await rowsOf('--sort', 'pid,dso,sym')).filter((l) => tids.has(tidOf(l)));
      const categories = new Map(CATEGORIES.map(([label]) => [label, 0]));
      for (const line of all) {
        const [label] = CATEGORIES.find(([, test]) => test(line));
        categories.set(label, categories.get(label) + Number.parseFloat(line));
      }
      const symbols = all.filter((l) => Number.parseFloat(l) >= 0.3).slice(0, 30);
      fs.rmSync(`/tmp/perf-${pid}.map`, { force: true });
      return [
        `perf record -a -e cpu-clock -F 499 during ${name}: % of all samples (both cores; swapper = idle)`,
        'by command (top 10):', ...byComm,
        `${name} process ${pid}: main thread ${fixed(main, 1)}%, other threads ${fixed(others, 1)}%, ≈ ${fixed((main + others) * cpuSecondsPerPercent, 2)} CPU s; by kind, CPU s (all its threads):`,
        ...[...categories].map(([label, pct]) => `  ${fixed(pct * cpuSecondsPerPercent, 2).padStart(6)}  ${label}`),
        'its symbols >= 0.3% (tid, object, symbol):',
        ...symbols.map((l) => l.slice(0, 200)),
      ].join('\n');
    },
  };
}

if (process.argv[1] === import.meta.filename && process.argv[2] === 'bare') {
  const [file, key, size] = process.argv.slice(3);
  const kit = await s3Kit();
  process.stdout.write('ready\n');
  const stdin = process.stdin.setEncoding('utf8');
  for await (const data of stdin) {
    if (!data.includes('go')) continue;
    const t0 = performance.now();
    const answer = await kit.bareUpload(file, key, Number(size)).then(() => ({ seconds: (performance.now() - t0) / 1000 }), (error) => ({ error: String(error) }));
    process.stdout.write(`${JSON.stringify(answer)}\n`);
  }
  process.exit(0);
}

