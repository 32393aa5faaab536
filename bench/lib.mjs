// Shared helpers of the benchmarks: child processes and temp dirs that are always cleaned up, free
// ports, a keep-alive HTTP client, percentiles and number formatting (/proc sampling: proc.mjs).
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

/**
 * The API server as users start it: scripts/start-api.sh picks node's flags by profile. Its arguments
 * are more node options; run it with NODE=process.execPath in its environment.
 */
export const API_START = path.join(REPO_ROOT, 'scripts', 'start-api.sh');

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

const GiB = 1024 * MiB;

/**
 * Writes to most of the free memory once, in a child process, and frees it again; returns the GiB
 * touched. A VM whose host backs guest memory only on first touch makes writes into page-cache pages
 * unused since boot several times dearer: on a fresh VM here nginx's PUT (a) ran at 508 MiB/s, and at
 * 995 right after this. The baselines write through the page cache, so without it they would be
 * measured slower than on a server that has run for a while (reads into new page-cache pages too: a
 * download from the local tier ran at 379 MiB/s with 2.25 CPU s copying, against 1590–1770 and 0.5).
 * `log` is told what was done.
 */
export function touchFreeMemory(log, maxBytes = 16 * GiB) {
  const started = performance.now();
  const available = Number(/^MemAvailable:\s+(\d+) kB/m.exec(fs.readFileSync('/proc/meminfo', 'utf8'))?.[1] ?? 0) * 1024;
  const gib = Math.floor(Math.min(maxBytes, available - 4 * GiB) / GiB);
  const script = `const held = []; for (let i = 0; i < ${gib}; i += 1) held.push(Buffer.alloc(${GiB}, 1));`;
  const touched = gib >= 1 && spawnSync(process.execPath, ['-e', script], { stdio: 'ignore' }).status === 0 ? gib : 0;
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  log(`touched ${touched} GiB of free memory once (${seconds} s), so page-cache writes and reads run as on a warm server`);
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
   * One request. `json` is sent as a JSON body; `body` (a Buffer, or a Readable piped) is sent with
   * `length` as Content-Length. Resolves { status, headers, body } with the body parsed when it is JSON.
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
      else if (Buffer.isBuffer(body)) req.end(body);
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
