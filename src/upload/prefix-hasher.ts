import { Thread } from '../thread.js';

/**
 * SHA-1 of staged upload files, advanced over each file's contiguous received prefix as chunks land,
 * so completion only hashes what is left of the tail. The hashing (and the read-back from the page
 * cache it needs) runs on a worker thread: on the event loop it cost about a fifth of the upload rate.
 * State is per process; a process that has none (after a restart, or on another API node) starts
 * again from byte 0 — slower, never wrong.
 */
export class PrefixHashers {
  private readonly thread = new Thread(WORKER_SOURCE);

  /** Lets hashing run ahead up to `contiguousBytes` in the background. */
  advance(uploadId: string, filePath: string, contiguousBytes: number): void {
    this.thread.post({ op: 'advance', uploadId, filePath, target: contiguousBytes });
  }

  /** Hashes the rest of a complete file of `size` bytes, flushes it to disk, and returns the hex SHA-1. */
  finish(uploadId: string, filePath: string, size: number): Promise<string> {
    return this.thread.request<string>({ op: 'finish', uploadId, filePath, target: size });
  }

  drop(uploadId: string): void {
    this.thread.postIfRunning({ op: 'drop', uploadId });
  }

  close(): Promise<void> {
    return this.thread.close();
  }
}

/** The hashing thread (plain CommonJS, so it runs the same from sources and from dist). */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const fs = require('node:fs');
const fsp = require('node:fs/promises');

// Reads bypass the page cache (O_DIRECT) where the filesystem allows: the chunks were written that
// way, so a buffered read would first fill fresh page-cache pages and then copy out of them, which cost
// half of the server's CPU during an upload. O_DIRECT needs page-aligned memory, which WebAssembly
// memory is. Read buffers are reused, never allocated per step (a fresh buffer per step made glibc keep
// tens of MiB of freed buffers in this thread's arena); the spare list holds as many as ever ran at once.
const READ_SIZE = 2 * 1024 * 1024;
const READS_AHEAD = 3;
const ALIGNMENT = 4096;
const spareBuffers = [];
const takeBuffer = () => spareBuffers.pop() ?? Buffer.from(new WebAssembly.Memory({ initial: READ_SIZE / 65536 }).buffer);
const SYNC_EVERY = 32 * 1024 * 1024;
const states = new Map();

function stateOf(id) {
  let state = states.get(id);
  if (!state) {
    state = { hash: createHash('sha1'), hashed: 0, target: 0, sinceSync: 0, chain: Promise.resolve(), flushing: null };
    states.set(id, state);
  }
  return state;
}

async function datasync(filePath) {
  const handle = await fsp.open(filePath, 'r');
  try {
    await handle.datasync();
  } finally {
    await handle.close();
  }
}

/** One background flush at a time; its failure only means the final one has more to do. */
function flushInBackground(state, filePath) {
  if (state.flushing) return;
  state.sinceSync = 0;
  state.flushing = datasync(filePath).catch(() => undefined).finally(() => { state.flushing = null; });
}

function openForReading(filePath) {
  return fsp.open(filePath, fs.constants.O_RDONLY | fs.constants.O_DIRECT).catch((error) => {
    if (error.code === 'EINVAL') return fsp.open(filePath, 'r');
    throw error;
  });
}

/**
 * Hashes up to the target, with READS_AHEAD reads in flight so the disk never waits for the hash nor
 * the hash for the disk (one read at a time left the hash a second behind the upload). Steps stay whole
 * blocks (O_DIRECT reads only those) until the final one, which reads whole blocks past the end of the
 * file and hashes only what is the file's.
 */
async function catchUp(state, filePath, final) {
  if (state.hashed >= state.target) return;
  const handle = await openForReading(filePath);
  const reads = [];
  let readTo = state.hashed;
  const readNext = () => {
    let step = Math.min(READ_SIZE, state.target - readTo);
    if (!final) step -= step % ALIGNMENT;
    if (step <= 0) return false;
    const buffer = takeBuffer();
    const position = readTo;
    readTo += step;
    const read = handle.read(buffer, 0, Math.ceil(step / ALIGNMENT) * ALIGNMENT, position).then(({ bytesRead }) => ({ buffer, bytes: Math.min(bytesRead, step), step }));
    reads.push({ buffer, read });
    read.catch(() => undefined);
    return true;
  };
  try {
    while (reads.length < READS_AHEAD && readNext());
    while (reads.length > 0) {
      const { buffer, bytes, step } = await reads[0].read;
      // a short read means the file is shorter than the received chunks say: never hash around a gap
      if (bytes < step) throw new Error('staged file ended at ' + (state.hashed + bytes) + ' bytes');
      state.hash.update(buffer.subarray(0, bytes));
      state.hashed += bytes;
      state.sinceSync += bytes;
      spareBuffers.push(reads.shift().buffer);
      if (state.sinceSync >= SYNC_EVERY) flushInBackground(state, filePath);
      readNext();
    }
  } finally {
    // after a failure, reads still in flight must end before their buffers and the file are let go
    for (const { buffer, read } of reads.splice(0)) {
      await read.catch(() => undefined);
      spareBuffers.push(buffer);
    }
    await handle.close();
  }
}

async function finish(state, filePath) {
  await catchUp(state, filePath, true);
  await state.flushing;
  await datasync(filePath);
  return state.hash.digest('hex');
}

parentPort.on('message', (message) => {
  if (message.op === 'drop') return void states.delete(message.uploadId);
  const state = stateOf(message.uploadId);
  state.target = Math.max(state.target, message.target);
  if (message.op === 'advance') {
    // a failed step leaves hash and offset consistent: the next step carries on from there
    state.chain = state.chain.then(() => catchUp(state, message.filePath, false)).catch(() => undefined);
    return;
  }
  state.chain = state.chain
    .then(() => finish(state, message.filePath))
    .then(
      (sha1) => parentPort.postMessage({ request: message.request, result: sha1 }),
      (error) => parentPort.postMessage({ request: message.request, error: { message: String(error && error.message) } }),
    )
    .finally(() => states.delete(message.uploadId));
});
`;
