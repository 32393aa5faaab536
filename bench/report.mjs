// Tables and lines the benchmark modes print.
import os from 'node:os';
import { MiB, fixed, loadLine, mbps, mibps } from './lib.mjs';
import { SIZE } from './settings.mjs';

export function throughputRow(label, stage, bytes = SIZE) {
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
export function details(label, m) {
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

export const phaseLine = (i) =>
  `phases p50/p99 ms: POST /api/uploads → challenge ${fixed(i.phases.create.p50, 2)}/${fixed(i.phases.create.p99, 2)}; ` +
  `client reads 3 ranges + SHA-256 ${fixed(i.phases.local.p50, 2)}/${fixed(i.phases.local.p99, 2)}; POST proof → 201 ${fixed(i.phases.proof.p50, 2)}/${fixed(i.phases.proof.p99, 2)}\n` +
  `server CPU per instant upload (mean): main thread ${fixed(i.serverCpuMs.main, 2)} ms, other threads ${fixed(i.serverCpuMs.others, 2)} ms`;

export const THROUGHPUT_HEADER = ['stage', 'MiB/s', 'MB/s', 'seconds', 'server CPU s', 'client CPU s', 'CPU s/GiB', 'machine busy', 'peak RSS MiB (before)', 'notes'];
export const THROUGHPUT_ALIGN = ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'l'];
export const verdict = (ok) => (ok === null ? 'n/a' : ok ? 'MET' : 'MISSED');

export function header(title, extra = []) {
  console.log(`\n=== ${title} ===`);
  console.log(`${new Date().toISOString()}  node ${process.version}  ${os.cpus()[0]?.model ?? ''}`);
  console.log(`${loadLine()} (at start)`);
  for (const line of extra) console.log(line);
}
