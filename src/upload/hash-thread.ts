/** The hashing thread (plain CommonJS, so it runs the same from sources and from dist). */
export const HASH_THREAD_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const fsp = require('node:fs/promises');

// Read buffers are reused, never allocated per step (a fresh buffer per step made glibc keep tens of MiB
// of freed buffers in this thread's arena); the spare list holds as many as ever ran at once.
const READ_SIZE = 1024 * 1024;
const READS_AHEAD = 3;
const spareBuffers = [];
const takeBuffer = () => spareBuffers.pop() ?? Buffer.allocUnsafeSlow(READ_SIZE);
// What went through the page cache (tails, odd chunk sizes, filesystems without O_DIRECT) starts going
// to disk while the file fills, and the disk's own cache is flushed, so completion's final fsync has
// little left. The flush runs beside the hashing, never in its way: waiting for the disk there let the
// hash fall seconds behind on a slow disk.
const SYNC_EVERY = 32 * 1024 * 1024;
const states = new Map();

function stateOf(id) {
  let state = states.get(id);
  if (!state) {
    state = { hash: createHash('sha1'), hashed: 0, sinceSync: 0, chain: Promise.resolve(), flushing: null, checkpoints: [] };
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

/** Adds the bytes that follow the hashed prefix, from memory or from the file; every SYNC_EVERY, a flush. */
function absorb(state, filePath, bytes) {
  state.hash.update(bytes);
  state.hashed += bytes.length;
  state.sinceSync += bytes.length;
  if (state.sinceSync >= SYNC_EVERY) flushInBackground(state, filePath);
}

/**
 * Hashes the file up to \`to\`, with READS_AHEAD reads in flight so the reads never wait for the hash nor
 * the hash for the reads (one read at a time left the hash a second behind the upload).
 */
async function catchUp(state, filePath, to) {
  if (state.hashed >= to) return;
  const handle = await fsp.open(filePath, 'r');
  const reads = [];
  let readTo = state.hashed;
  const readNext = () => {
    const step = Math.min(READ_SIZE, to - readTo);
    if (step <= 0) return false;
    const buffer = takeBuffer();
    const position = readTo;
    readTo += step;
    const read = handle.read(buffer, 0, step, position).then(({ bytesRead }) => ({ buffer, bytes: bytesRead, step }));
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
      absorb(state, filePath, buffer.subarray(0, bytes));
      spareBuffers.push(reads.shift().buffer);
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
  await catchUp(state, filePath, size);
  await state.flushing;
  await datasync(filePath);
  return state.hash.digest('hex');
}

const reply = (message, result) => parentPort.postMessage({ request: message.request, result });
const fail = (message, error) => parentPort.postMessage({ request: message.request, error: { message: String(error && error.message) } });

/**
 * Hashes bytes kept in (shared) memory, if they start where the hash stands; else file reads cover them.
 * Bytes of a chunk not yet received whole (\`ofChunk\`: where it starts) may have to be taken back: the
 * hash as it stood at the chunk's start is kept until the chunks before \`receivedTo\` no longer need it.
 */
function hashBytes(state, message) {
  if (message.position !== state.hashed) return;
  if (state.checkpoints.length > 0) state.checkpoints = state.checkpoints.filter((checkpoint) => checkpoint.position >= message.receivedTo);
  if (message.ofChunk !== undefined && !state.checkpoints.some((checkpoint) => checkpoint.position === message.ofChunk)) {
    // a chunk's bytes are only ever taken in from its start on, so a missing checkpoint is never made up
    if (message.ofChunk !== state.hashed) return;
    state.checkpoints.push({ position: state.hashed, hash: state.hash.copy() });
  }
  absorb(state, message.filePath, Buffer.from(message.memory, message.offset, message.length));
}

/**
 * Takes back what was hashed from \`to\` on (a chunk that failed after some of its bytes were hashed).
 * Without a checkpoint there, the hash starts again from byte 0: file reads then cover what is received.
 */
function rollBack(state, to) {
  if (state.hashed <= to) return;
  const checkpoint = state.checkpoints.find((candidate) => candidate.position === to);
  state.hash = checkpoint ? checkpoint.hash : createHash('sha1');
  state.hashed = checkpoint ? to : 0;
  state.checkpoints = state.checkpoints.filter((candidate) => candidate.position < state.hashed);
}

parentPort.on('message', (message) => {
  if (message.op === 'drop') return void states.delete(message.uploadId);
  const state = stateOf(message.uploadId);
  if (message.op === 'bytes') {
    state.chain = state.chain.then(() => hashBytes(state, message)).then(() => reply(message), (error) => fail(message, error));
    return;
  }
  if (message.op === 'rollback') {
    state.chain = state.chain.then(() => rollBack(state, message.to));
    return;
  }
  if (message.op === 'file') {
    // a failed step leaves hash and offset consistent: the next step carries on from there
    state.chain = state.chain.then(() => catchUp(state, message.filePath, message.to)).catch(() => undefined);
    return;
  }
  state.chain = state.chain
    .then(() => finish(state, message.filePath, message.to))
    .then((sha1) => reply(message, sha1), (error) => fail(message, error))
    .finally(() => states.delete(message.uploadId));
});
`;
