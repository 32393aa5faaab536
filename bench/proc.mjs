// /proc sampling of the processes under benchmark: RSS, CPU per thread, I/O, machine busy share, and
// `measured`, which wraps a stage with all of them.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';

export function rssKiB(pid) {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    return Number(/^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1] ?? 0);
  } catch {
    return 0;
  }
}

/** pid and its direct children (nginx master + workers). */
export function withChildren(pid) {
  try {
    const list = fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim();
    return [pid, ...(list ? list.split(/\s+/).map(Number) : [])];
  } catch {
    return [pid];
  }
}

/** Samples the summed VmRSS of `pids()` every `intervalMs`; stop() → { peakKiB, samples }. */
export function sampleRss(pids, intervalMs = 50) {
  let peakKiB = 0;
  let samples = 0;
  const take = () => {
    const total = pids().reduce((sum, pid) => sum + rssKiB(pid), 0);
    peakKiB = Math.max(peakKiB, total);
    samples += 1;
  };
  take();
  const timer = setInterval(take, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      take();
      return { peakKiB, samples };
    },
  };
}

const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/** CPU seconds (user+system) used so far by `pid` (its own threads, not its children). */
export function cpuSeconds(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
  } catch {
    return 0;
  }
}

/**
 * CPU seconds of `pid`'s main thread (tid = pid: JavaScript, including synchronous hashing) and of
 * its other threads (libuv pool: fs syscalls such as write/read/fsync; V8 helper threads: GC).
 */
export function threadCpu(pid) {
  let main = 0;
  let others = 0;
  let tids = [];
  try {
    tids = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return { main, others };
  }
  for (const tid of tids) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const seconds = (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
      if (Number(tid) === pid) main += seconds;
      else others += seconds;
    } catch {
      /* thread ended */
    }
  }
  return { main, others };
}

/** CPU seconds of this process's children that have exited and been reaped (cutime + cstime). */
export function reapedChildrenCpu() {
  const stat = fs.readFileSync('/proc/self/stat', 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[13]) + Number(fields[14])) / CLK_TCK;
}

/** /proc/<pid>/io counters: syscr/syscw (read/write-family syscalls, sockets included), rchar/wchar bytes. */
export function ioCounters(pid) {
  try {
    const text = fs.readFileSync(`/proc/${pid}/io`, 'utf8');
    return Object.fromEntries(text.trim().split('\n').map((line) => {
      const [key, value] = line.split(':');
      return [key.trim(), Number(value)];
    }));
  } catch {
    return null;
  }
}

/** Machine-wide CPU counters; busyShare(before, after) is the busy fraction of all cores in between. */
export function machineCpu() {
  const line = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const total = line.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = line[3] + line[4];
  return { total, idle };
}
export function busyShare(before, after) {
  const total = after.total - before.total;
  return total > 0 ? 1 - (after.idle - before.idle) / total : 0;
}

/**
 * Runs `fn` while measuring wall time, the machine's CPU busy share, this process's CPU and (with `pid`,
 * or `pids` for a process family) the server's CPU seconds and peak RSS.
 */
export async function measured(fn, { pid, pids } = {}) {
  const rssPids = pids ?? (pid ? () => [pid] : null);
  const sampler = rssPids ? sampleRss(rssPids) : null;
  const cpuPids = rssPids ? rssPids() : [];
  const startRssKiB = cpuPids.reduce((sum, p) => sum + rssKiB(p), 0);
  const cpuOf = () => cpuPids.reduce((sum, p) => sum + cpuSeconds(p), 0);
  const cpu0 = cpuOf();
  const threads0 = pid ? threadCpu(pid) : null;
  const io0 = pid ? ioCounters(pid) : null;
  const self0 = process.cpuUsage();
  const reaped0 = reapedChildrenCpu();
  const machine0 = machineCpu();
  const t0 = performance.now();
  const result = await fn();
  const seconds = (performance.now() - t0) / 1000;
  const selfUsage = process.cpuUsage(self0);
  const reaped = reapedChildrenCpu() - reaped0;
  return {
    result,
    seconds,
    busy: busyShare(machine0, machineCpu()),
    serverCpu: cpuPids.length > 0 ? cpuOf() - cpu0 : null,
    serverIo: io0 ? ((io) => io && Object.fromEntries(Object.keys(io0).map((k) => [k, io[k] - io0[k]])))(ioCounters(pid)) : null,
    serverThreads: threads0 ? ((t) => ({ main: t.main - threads0.main, others: t.others - threads0.others }))(threadCpu(pid)) : null,
    // this process plus the children it reaped meanwhile (curl, dd)
    clientCpu: (selfUsage.user + selfUsage.system) / 1e6 + reaped,
    peakRssKiB: sampler ? sampler.stop().peakKiB : null,
    startRssKiB,
  };
}
