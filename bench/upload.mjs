// Mode upload (make bench): (a) nginx, (b) the tus peer, (c) chunked, (d) tus, (e) instant, (f) dd and SHA-1.
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  MiB, fixed, freePort, hashFile, loadLine, makeRandomFile, makeTempDir, mibps, onCleanup, run, sleep, startChild, stopChild, syncDisks, table, touchFreeMemory, waitForPort, which,
} from './lib.mjs';
import { measured, withChildren } from './proc.mjs';
import { SIZE, CHUNK, INFLIGHT, INSTANT_RUNS, INSTANT_WARMUP, IDLE_S, ROUNDS, STAGES, WARMUP_MB, log, TARGET_VS_NGINX, TARGET_VS_PEER, TARGET_INSTANT_MS, TARGET_RSS_BYTES } from './settings.mjs';
import { startFilestore, stopFilestore, userToken, chunkedUpload, tusUpload, instantSeries } from './filestore.mjs';
import { throughputRow, details, phaseLine, THROUGHPUT_HEADER, THROUGHPUT_ALIGN, verdict, header } from './report.mjs';

/** The untimed upload each server takes first (null when BENCH_WARMUP_MB=0). */
let warmup = null;

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
    if (warmup) await run('curl', ['-sS', '-o', '/dev/null', '-T', warmup.file, `http://127.0.0.1:${port}/warmup.bin`]);
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
    if (warmup) await tusUpload({ endpoint: `http://127.0.0.1:${port}/files/`, file: warmup.file, metadata: { filename: 'warmup.bin' } });
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

/**
 * The round with the median rate (of an odd count; the slower middle one of an even count), its note
 * listing every round's MiB/s; a skipped stage stays skipped.
 */
function medianRound(rounds) {
  if (rounds.length === 0) return undefined;
  if (rounds.some((round) => round.skipped)) return rounds.find((round) => round.skipped);
  if (rounds.length === 1) return rounds[0];
  const bySpeed = [...rounds].sort((x, y) => y.seconds - x.seconds);
  const median = bySpeed[Math.floor((bySpeed.length - 1) / 2)];
  const speeds = rounds.map((round) => fixed(mibps(SIZE, round.seconds), 0)).join(', ');
  return { ...median, note: `median of ${rounds.length} rounds (${speeds} MiB/s); ${median.note ?? ''}`.replace(/; $/, '') };
}

export async function uploadBenchmark() {
  header('filestore upload benchmark', [
    `file ${(SIZE / MiB).toFixed(0)} MiB random, 127.0.0.1; chunks ${CHUNK / MiB} MiB, ${INFLIGHT} in flight; stages ${[...STAGES].join(',')}`,
    ...(IDLE_S > 0 ? [`filestore sits idle ${IDLE_S} s after its warm-up, before each timed (c) upload`] : []),
    WARMUP_MB > 0 ? `each server (nginx, the tus peer, filestore for (c) and for (d)) first takes one untimed ${WARMUP_MB} MiB upload` : 'no warm-up uploads (BENCH_WARMUP_MB=0)',
    `(a), (b) and (c) run ${ROUNDS} round(s), interleaved; each reports its median round, and the targets use those`,
  ]);
  touchFreeMemory(log);
  const tmp = await makeTempDir('filestore-bench-');
  const file = path.join(tmp, 'random.bin');
  log(`writing ${SIZE / MiB} MiB of random data to ${file}`);
  await makeRandomFile(file, SIZE);
  if (WARMUP_MB > 0) {
    warmup = { file: path.join(tmp, 'warmup.bin'), size: Math.round(WARMUP_MB * MiB) };
    await makeRandomFile(warmup.file, warmup.size);
    warmup.sha1 = await hashFile(warmup.file, 'sha1');
  }
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
  // one server for (c), (d) and (e): each round of (c) gets a fresh one (the content would dedupe on the
  // last), and the last round's stays for (d) and (e)
  let server = null;
  let token = null;
  const freshServer = async (round) => {
    if (server) {
      await stopFilestore(server);
      await fsp.rm(server.dataDir, { recursive: true, force: true });
    }
    const dataDir = path.join(tmp, `data-embedded-${round}`);
    server = { ...(await startFilestore('embedded', dataDir)), dataDir };
    const { client } = server;
    onCleanup(() => client.close());
    token = await userToken(client, 'bench-alice');
  };
  const rounds = { nginx: [], peer: [], chunked: [] };
  try {
    for (let round = 1; round <= ROUNDS; round += 1) {
      const of = ROUNDS > 1 ? ` (round ${round} of ${ROUNDS})` : '';
      if (STAGES.has('a')) {
        log(`(a) nginx WebDAV PUT, curl -T${of}`);
        rounds.nginx.push(await nginxPut(tmp, file));
        syncDisks();
      }
      if (STAGES.has('b')) {
        log(`(b) @tus/server + @tus/file-store, tus-js-client${of}`);
        rounds.peer.push(await tusPeer(tmp, file));
        syncDisks();
      }
      if (STAGES.has('c')) {
        log(`(c) filestore chunked upload${of}`);
        await freshServer(round);
        if (warmup) await chunkedUpload(server.client, token, { ...warmup, name: 'warmup-chunked.bin', folder: '/warmup' });
        if (IDLE_S > 0) await sleep(IDLE_S * 1000);
        const m = await measured(() => chunkedUpload(server.client, token, { file, size: SIZE, sha1, name: 'chunked.bin', folder: '/bench' }), { pid: server.pid });
        rounds.chunked.push({ ...m, note: `complete ${fixed(m.result.completeSeconds * 1000, 0)} ms; details below` });
        syncDisks();
      }
    }
    results.nginx = medianRound(rounds.nginx);
    results.peer = medianRound(rounds.peer);
    results.chunked = medianRound(rounds.chunked);
    if (results.chunked) results.chunked.peakRssKiBOfRounds = Math.max(...rounds.chunked.map((m) => m.peakRssKiB));

    if (!server && ['d', 'e'].some((stage) => STAGES.has(stage))) await freshServer(1);
    let stored = STAGES.has('c');
    if (STAGES.has('d')) {
      log('(d) filestore tus upload, tus-js-client');
      if (warmup) {
        await tusUpload({
          endpoint: `http://127.0.0.1:${server.port}/api/tus`,
          file: warmup.file,
          metadata: { filename: 'warmup-tus.bin', folder: '/warmup', sha1: warmup.sha1 },
          headers: { Authorization: `Bearer ${token}` },
        });
      }
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
    const bytes = results.chunked.peakRssKiBOfRounds * 1024;
    targetRows.push(['server peak RSS during (c), MB (highest round)', fixed(bytes / 1e6, 0), `<= ${TARGET_RSS_BYTES / 1e6}`, verdict(bytes <= TARGET_RSS_BYTES)]);
  }
  console.log(table(['what', 'value', 'target', ''], targetRows, ['l', 'r', 'r', 'l']));
  // (a) and (b) leave the bytes in the page cache; (c) answers only once they are on disk
  const ceiling = verifyingCeiling(results.nginx, results.sha1);
  if (ceiling && a) {
    console.log(`context: a server that cost what (a) cost per GiB (${fixed(ceiling.nginxCpu, 2)} CPU s, curl's included) and hashed as fast as (f) (${fixed(ceiling.sha1Cpu, 2)} s)`);
    console.log(`  could reach at most ${fixed(ceiling.mibps, 0)} MiB/s on ${os.cpus().length} cores with every core busy = ${fixed(ceiling.mibps / a, 2)} × (a); ${c ? `(c) cost ${fixed(cpuPerGiB(results.chunked), 2)} CPU s per GiB` : ''}`);
  }
  const paired = pairedRatios(rounds);
  if (paired) console.log(`context: per round ((a), (b), (c) back to back, so each round shares the machine's moment): ${paired}`);
  const d = rate(results.dd);
  if (c && d) console.log(`context: (c)/(f dd conv=fsync) = ${(c / d).toFixed(2)}; (a) and (b) leave the bytes in the page cache, (c) answers once they are on disk`);
}

/**
 * Each round's (c)/(a) and (c)/(b). The medians of the stages come from different rounds; on a VM whose
 * speed wanders within a minute (nginx 398–912 MiB/s in one run), the ratio within a round is the steadier
 * reading, and their spread shows how far one run's ratio can be trusted.
 */
function pairedRatios(rounds) {
  const count = rounds.chunked.length;
  if (count < 2) return null;
  const ratios = (other) => (other.length === count && !other.some((m) => m.skipped) ? rounds.chunked.map((c, i) => other[i].seconds / c.seconds) : null);
  const line = (label, values) => (values ? `${label} ${values.map((v) => v.toFixed(2)).join(', ')} (median ${median(values).toFixed(2)})` : null);
  return [line('(c)/(a)', ratios(rounds.nginx)), line('(c)/(b)', ratios(rounds.peer))].filter(Boolean).join('; ') || null;
}

const median = (values) => [...values].sort((x, y) => x - y)[Math.floor((values.length - 1) / 2)];

const cpuPerGiB = (stage) => (((stage.serverCpu ?? 0) + stage.clientCpu) * 1024 * MiB) / SIZE;

/**
 * The most any server that verifies the SHA-1 as it stores could reach here: its CPU per GiB is at least
 * what nginx's PUT cost (receiving and writing, and curl sending) plus the hash; the cores bound the rest.
 * When that ceiling lies below 0.8 × (a), the target cannot be met on this machine that day, whatever
 * the code does: the SHA-1 of one stream runs on one core, and the cores are shared with the client.
 */
function verifyingCeiling(nginx, sha1) {
  if (!nginx || nginx.skipped || !sha1) return null;
  const nginxCpu = cpuPerGiB(nginx);
  // (f)'s wall time, not its CPU: the hash runs on one core while the reads from the page cache run beside it
  const sha1Cpu = (sha1.seconds * 1024 * MiB) / SIZE;
  return { nginxCpu, sha1Cpu, mibps: (os.cpus().length * 1024) / (nginxCpu + sha1Cpu) };
}
