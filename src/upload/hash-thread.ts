/** The hashing thread (plain CommonJS, so it runs the same from sources and from dist). */
export const HASH_THREAD_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const fs = require('node:fs');
const fsp = require('node:fs/promises');

// Reads bypass the page cache (O_DIRECT) where the filesystem allows: the chunks were written that
// way, so a buffered read would first fill fresh page-cache pages and then copy out of them, which cost
// half of the server's CPU during an upload. O_DIRECT needs page-aligned memory, which WebAssembly
// memory is. Read buffers are reused, never allocated per step (a fresh buffer per step made glibc keep
// tens of MiB of freed buffers in this thread's arena); the spare list holds as many as ever ran at once.
const READ_SIZE = 1024 * 1024;
const READS_AHEAD = 3;
const ALIGNMENT = 4096;
const spareBuffers = [];
const takeBuffer = () => spareBuffers.pop() ?? Buffer.from(new WebAssembly.Memory({ initial: READ_SIZE / 65536 }).buffer);
// Bytes written through the page cache (unaligned pieces, filesystems without O_DIRECT) start going to disk
// while the file fills, so completion's final fsync has little left. The flush runs beside the hashing,
// never in its way: waiting for the disk there let the hash fall seconds behind on a slow disk.
const SYNC_EVERY = 32 * 1024 * 1024;
const states = new Map();

function stateOf(id) {
  let state = states.get(id);
  if (!state) {
    state = { hash: createHash('sha1'), hashed: 0, sinceSync: 0, chain: Promise.resolve(), flushing: null };
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

// Cleared for good when the filesystem refuses O_DIRECT, or asks more alignment than ALIGNMENT
let directReads = true;

function openForReading(filePath, direct) {
  if (!direct) return fsp.open(filePath, 'r');
  return fsp.open(filePath, fs.constants.O_RDONLY | fs.constants.O_DIRECT).catch((error) => {
    if (error.code !== 'EINVAL') throw error;
    directReads = false;
    return fsp.open(filePath, 'r');
  });
}

/** Hashes the file up to \`to\`; where an O_DIRECT read is refused, carries on with buffered reads. */
async function catchUp(state, filePath, to, final) {
  const direct = directReads;
  try {
    await readAndHash(state, filePath, to, final, direct);
  } catch (error) {
    if (!direct || error.code !== 'EINVAL') throw error;
    directReads = false;
    await readAndHash(state, filePath, to, final, false);
  }
}

/**
 * Hashes the file up to \`to\`, with READS_AHEAD reads in flight so the disk never waits for the hash nor
 * the hash for the disk (one read at a time left the hash a second behind the upload). Steps stay whole
 * blocks (O_DIRECT reads only those) until the final one, which reads whole blocks past the end of the
 * file and hashes only what is the file's.
 */
async function readAndHash(state, filePath, to, final, direct) {
  if (state.hashed >= to) return;
  const handle = await openForReading(filePath, direct);
  const reads = [];
  let readTo = state.hashed;
  const readNext = () => {
    let step = Math.min(READ_SIZE, to - readTo);
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

async function finish(state, filePath, size) {
  await catchUp(state, filePath, size, true);
  await state.flushing;
  await datasync(filePath);
  return state.hash.digest('hex');
}

const reply = (message, result) => parentPort.postMessage({ request: message.request, result });
const fail = (message, error) => parentPort.postMessage({ request: message.request, error: { message: String(error && error.message) } });

/** Hashes bytes kept in (shared) memory, if they start where the hash stands; else file reads cover them. */
function hashBytes(state, message) {
  if (message.position !== state.hashed) return;
  state.hash.update(Buffer.from(message.memory, message.offset, message.length));
  state.hashed += message.length;
  state.sinceSync += message.length;
}

parentPort.on('message', (message) => {
  if (message.op === 'drop') return void states.delete(message.uploadId);
  const state = stateOf(message.uploadId);
  if (message.op === 'bytes') {
    state.chain = state.chain.then(() => hashBytes(state, message)).then(() => reply(message), (error) => fail(message, error));
    return;
  }
  if (message.op === 'file') {
    // a failed step leaves hash and offset consistent: the next step carries on from there
    state.chain = state.chain.then(() => catchUp(state, message.filePath, message.to, false)).catch(() => undefined);
    return;
  }
  state.chain = state.chain
    .then(() => finish(state, message.filePath, message.to))
    .then((sha1) => reply(message, sha1), (error) => fail(message, error))
    .finally(() => states.delete(message.uploadId));
});
`;
