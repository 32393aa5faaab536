import { Worker } from 'node:worker_threads';

/**
 * SHA-1 of staged upload files, advanced over each file's contiguous received prefix as chunks land,
 * so completion only hashes what is left of the tail. The hashing (and the read-back from the page
 * cache it needs) runs on a worker thread: on the event loop it cost about a fifth of the upload rate.
 * State is per process; a process that has none (after a restart, or on another API node) starts
 * again from byte 0 — slower, never wrong.
 */
export class PrefixHashers {
  private worker: Worker | null = null;
  private readonly waiting = new Map<number, { resolve: (sha1: string) => void; reject: (error: Error) => void }>();
  private nextRequest = 0;

  /** Lets hashing run ahead up to `contiguousBytes` in the background. */
  advance(uploadId: string, filePath: string, contiguousBytes: number): void {
    this.thread().postMessage({ op: 'advance', uploadId, filePath, target: contiguousBytes });
  }

  /** Hashes the rest of a complete file of `size` bytes, flushes it to disk, and returns the hex SHA-1. */
  finish(uploadId: string, filePath: string, size: number): Promise<string> {
    const request = this.nextRequest++;
    return new Promise((resolve, reject) => {
      this.waiting.set(request, { resolve, reject });
      this.thread().postMessage({ op: 'finish', request, uploadId, filePath, target: size });
    });
  }

  drop(uploadId: string): void {
    this.worker?.postMessage({ op: 'drop', uploadId });
  }

  async close(): Promise<void> {
    await this.worker?.terminate();
    this.worker = null;
  }

  private thread(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(WORKER_SOURCE, { eval: true });
    worker.unref();
    worker.on('message', (reply: { request: number; sha1?: string; error?: string }) => {
      const waiter = this.waiting.get(reply.request);
      this.waiting.delete(reply.request);
      if (reply.sha1 !== undefined) waiter?.resolve(reply.sha1);
      else waiter?.reject(new Error(reply.error ?? 'hashing failed'));
    });
    const lost = (error: Error) => {
      if (this.worker !== worker) return;
      this.worker = null;
      for (const waiter of this.waiting.values()) waiter.reject(error);
      this.waiting.clear();
    };
    worker.on('error', lost);
    worker.on('exit', (code) => lost(new Error(`hashing thread exited with code ${code}`)));
    this.worker = worker;
    return worker;
  }
}

/** The hashing thread (plain CommonJS, so it runs the same from sources and from dist). */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const fsp = require('node:fs/promises');

const READ_SIZE = 4 * 1024 * 1024;
// flush dirty pages now and then while the file fills, so completion's final fsync has little left
const SYNC_EVERY = 128 * 1024 * 1024;
const states = new Map();

function stateOf(id) {
  let state = states.get(id);
  if (!state) {
    state = { hash: createHash('sha1'), hashed: 0, target: 0, sinceSync: 0, chain: Promise.resolve() };
    states.set(id, state);
  }
  return state;
}

async function catchUp(state, filePath) {
  if (state.hashed >= state.target) return;
  const handle = await fsp.open(filePath, 'r');
  try {
    const buffer = Buffer.allocUnsafe(READ_SIZE);
    while (state.hashed < state.target) {
      const { bytesRead } = await handle.read(buffer, 0, Math.min(READ_SIZE, state.target - state.hashed), state.hashed);
      if (bytesRead === 0) throw new Error('staged file ended at ' + state.hashed + ' bytes');
      state.hash.update(buffer.subarray(0, bytesRead));
      state.hashed += bytesRead;
      state.sinceSync += bytesRead;
      if (state.sinceSync >= SYNC_EVERY) {
        state.sinceSync = 0;
        await handle.datasync();
      }
    }
  } finally {
    await handle.close();
  }
}

async function finish(state, filePath) {
  await catchUp(state, filePath);
  const handle = await fsp.open(filePath, 'r');
  try {
    await handle.datasync();
  } finally {
    await handle.close();
  }
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
      (sha1) => parentPort.postMessage({ request: message.request, sha1 }),
      (error) => parentPort.postMessage({ request: message.request, error: String(error && error.message) }),
    )
    .finally(() => states.delete(message.uploadId));
});
`;
