// Shared helpers of the upload benchmark: child processes and temp dirs that are always cleaned up,
// free ports, a keep-alive HTTP client, /proc sampling (RSS, CPU), percentiles and number formatting.
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomFillSync } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const MiB = 1024 * 1024;
export const REPO_ROOT = path.resolve(import.meta.dirname, '..');

// ------------------------------------------------------------------ cleanup registry

const children = new Map(); // pid -> { child, name, group }
const tempDirs = new Set();
const cleanups = []; // async functions run (last first) by cleanup()
let cleaning = null;

/** A new temp dir under os.tmpdir(), removed by cleanup(). */
export async function makeTempDir(prefix) {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), prefix));
  tempDirs.add(dir);
  return dir;
}

export function onCleanup(fn) {
  cleanups.push(fn);
}

/**
 * Starts a child process that cleanup() stops by its pid (or, with `group`, by its own process group,
 * for servers with worker processes such as nginx). stdout/stderr are kept (last 64 KiB) for diagnostics.
 */
export function startChild(name, command, args, options = {}) {
  const { group = false, ...spawnOptions } = options;
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: group, ...spawnOptions });
  const entry = { child, name, group, output: '' };
  const keep = (data) => {
    entry.output = (entry.output + data.toString()).slice(-65536);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  child.exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  child.on('error', (error) => {
    entry.output += `\n[spawn error] ${error.message}`;
  });
  if (child.pid) children.set(child.pid, entry);
  child.exited.then(() => children.delete(child.pid));
  child.outputTail = () => entry.output;
  return child;
}

/** SIGTERM (SIGKILL after `graceMs`) to one child started by startChild; resolves when it exited. */
export async function stopChild(child, graceMs = 15000) {
  const entry = children.get(child.pid);
  if (!entry || child.exitCode !== null || child.signalCode !== null) return;
  const target = entry.group ? -child.pid : child.pid;
  try {
    process.kill(target, 'SIGTERM');
  } catch {
    return;
  }
  const timer = new Promise((resolve) => setTimeout(resolve, graceMs, 'timeout'));
  if ((await Promise.race([child.exited, timer])) === 'timeout') {
    try {
      process.kill(target, 'SIGKILL');
    } catch {
      /* gone */
    }
    await child.exited;
  }
}

/** Stops every child still running, then runs registered cleanups (last first), removes temp dirs. Safe to call twice. */
export function cleanup() {
  cleaning ??= (async () => {
    // children first: a server still running must not see its database dropped under it
    await Promise.all([...children.values()].map(({ child }) => stopChild(child, 5000)));
    for (const fn of cleanups.reverse()) {
      try {
        await fn();
      } catch (error) {
        process.stderr.write(`bench: cleanup step failed: ${error.message}\n`);
      }
    }
    for (const dir of tempDirs) await fsp.rm(dir, { recursive: true, force: true });
    tempDirs.clear();
  })();
  return cleaning;
}

// last resort when the process ends without cleanup() having finished (exceptions, process.exit)
process.on('exit', () => {
  for (const { child, group } of children.values()) {
    try {
      process.kill(group ? -child.pid : child.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true });
});
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    process.stderr.write(`\nbench: ${signal}, cleaning up\n`);
    cleanup().finally(() => process.exit(130));
  });
}

// ------------------------------------------------------------------ processes, ports

/** A port that was free a moment ago on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Resolves once something accepts TCP connections on 127.0.0.1:port; rejects when `child` exits first. */
export async function waitForPort(port, child, timeoutMs = 30000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child && (child.exitCode !== null || child.signalCode !== null)) {
      throw new Error(`process exited before listening on ${port}:\n${child.outputTail?.() ?? ''}`);
    }
    const ok = await new Promise((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error(`nothing listens on ${port} after ${timeoutMs} ms:\n${child?.outputTail?.() ?? ''}`);
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Runs a command to its end; resolves { code, stdout, stderr, seconds }. */
export function run(command, args, options = {}) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = startChild(command, command, args, options);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.exited.then(({ code }) => resolve({ code, stdout, stderr, seconds: (performance.now() - t0) / 1000 }));
  });
}

export function which(name) {
  for (const dir of (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/sbin'])) {
    const candidate = path.join(dir, name);
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      /* next */
    }
  }
  return null;
}

/** `sync`: flush everyone's dirty pages, so one stage's writeback does not land in the next one's timing. */
export function syncDisks() {
  spawnSync('sync', [], { stdio: 'ignore' });
}

// ------------------------------------------------------------------ /proc sampling

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

// ------------------------------------------------------------------ files

/** Writes `bytes` of random data to `file` (8 MiB at a time). */
export async function makeRandomFile(file, bytes) {
  const handle = await fsp.open(file, 'wx');
  try {
    const buffer = Buffer.allocUnsafe(8 * MiB);
    for (let done = 0; done < bytes; ) {
      const n = Math.min(buffer.length, bytes - done);
      randomFillSync(buffer, 0, n);
      await handle.write(buffer, 0, n, done);
      done += n;
    }
  } finally {
    await handle.close();
  }
}

/** Streamed node:crypto hash of a file (4 MiB reads). */
export async function hashFile(file, algorithm = 'sha1') {
  const hash = createHash(algorithm);
  for await (const piece of fs.createReadStream(file, { highWaterMark: 4 * MiB })) hash.update(piece);
  return hash.digest('hex');
}

// ------------------------------------------------------------------ HTTP

/** A node:http client for one 127.0.0.1 server with a keep-alive agent. */
export function httpClient(port, maxSockets = 8) {
  const agent = new http.Agent({ keepAlive: true, maxSockets });

  /**
   * One request. `json` is sent as a JSON body; `body` (a Readable) is piped with `length` as
   * Content-Length. Resolves { status, headers, body } with the body parsed when it is JSON.
   */
  function request(method, urlPath, { token, json, body, length, headers = {} } = {}) {
    return new Promise((resolve, reject) => {
      const allHeaders = { ...headers };
      if (token) allHeaders.authorization = `Bearer ${token}`;
      let payload = null;
      if (json !== undefined) {
        payload = Buffer.from(JSON.stringify(json));
        allHeaders['content-type'] = 'application/json';
        allHeaders['content-length'] = payload.length;
      } else if (body) {
        allHeaders['content-type'] ??= 'application/octet-stream';
        allHeaders['content-length'] = length;
      }
      const req = http.request({ host: '127.0.0.1', port, method, path: urlPath, agent, headers: allHeaders });
      req.on('error', reject);
      req.on('response', (res) => {
        const pieces = [];
        res.on('data', (d) => pieces.push(d));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(pieces).toString();
          let parsed = text;
          if (/json/.test(res.headers['content-type'] ?? '') && text) {
            try {
              parsed = JSON.parse(text);
            } catch {
              /* keep text */
            }
          }
          resolve({ status: res.statusCode, headers: res.headers, body: parsed });
        });
      });
      if (payload) req.end(payload);
      else if (body) {
        body.on('error', (error) => req.destroy(error));
        body.pipe(req);
      } else req.end();
    });
  }

  return { agent, request, close: () => agent.destroy() };
}

/** Throws with the response shown unless `res.status` is one of `expected`. */
export function expectStatus(res, what, ...expected) {
  if (!expected.includes(res.status)) {
    const shown = typeof res.body === 'string' ? res.body : JSON.stringify(res.body);
    throw new Error(`${what}: HTTP ${res.status} (expected ${expected.join('/')}): ${shown.slice(0, 500)}`);
  }
  return res;
}

// ------------------------------------------------------------------ numbers

/** Nearest-rank percentile of numbers (p in 0…100). */
export function percentile(values, p) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)];
}

export const mibps = (bytes, seconds) => bytes / MiB / seconds;
export const mbps = (bytes, seconds) => bytes / 1e6 / seconds;
export const fixed = (value, digits = 1) => (value === null || value === undefined || Number.isNaN(value) ? 'n/a' : value.toFixed(digits));

/** A plain-text table with right-aligned numeric columns. rows: arrays of strings; align: 'l'/'r' per column. */
export function table(header, rows, align) {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i] ?? '').length)));
  const cell = (value, i) => (align[i] === 'r' ? String(value ?? '').padStart(widths[i]) : String(value ?? '').padEnd(widths[i]));
  const line = (r) => r.map(cell).join('  ').trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

export function loadLine() {
  const [one, five, fifteen] = os.loadavg();
  return `load average ${one.toFixed(2)} / ${five.toFixed(2)} / ${fifteen.toFixed(2)} on ${os.cpus().length} cores`;
}
