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
const fsp = require('node:fs/promises');

// Read buffers are reused, never allocated per step: a fresh 4 MiB buffer per step made glibc raise its
// mmap threshold and keep tens of MiB of freed buffers in this thread's arena (peak RSS). The spare
// list holds as many as ever ran at once, not one per open upload.
const READ_SIZE = 1024 * 1024;
const spareBuffers = [];
// Start writing dirty pages to disk while the file fills, so completion's final fsync has little left.
// The flush runs beside the hashing, never in its way: waiting for the disk there let the hash fall
// seconds behind on a slow disk, and completion then waited for both.
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

async function catchUp(state, filePath) {
  if (state.hashed >= state.target) return;
  const handle = await fsp.open(filePath, 'r');
  const buffer = spareBuffers.pop() ?? Buffer.allocUnsafe(READ_SIZE);
  try {
    while (state.hashed < state.target) {
      const { bytesRead } = await handle.read(buffer, 0, Math.min(READ_SIZE, state.target - state.hashed), state.hashed);
      if (bytesRead === 0) throw new Error('staged file ended at ' + state.hashed + ' bytes');
      state.hash.update(buffer.subarray(0, bytesRead));
      state.hashed += bytesRead;
      state.sinceSync += bytesRead;
      if (state.sinceSync >= SYNC_EVERY) flushInBackground(state, filePath);
    }
  } finally {
    spareBuffers.push(buffer);
    await handle.close();
  }
}

async function finish(state, filePath) {
  await catchUp(state, filePath);
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
    state.chain = state.chain.then(() => catchUp(state, message.filePath)).catch(() => undefined);
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
