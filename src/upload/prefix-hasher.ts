import { createHash, type Hash } from 'node:crypto';
import fsp from 'node:fs/promises';

const READ_SIZE = 4 * 1024 * 1024;
// Flush dirty pages now and then while the file fills, so completion's final fsync has little left.
const SYNC_EVERY = 128 * 1024 * 1024;

interface PrefixState {
  hash: Hash;
  hashed: number;
  target: number;
  sinceSync: number;
  running: Promise<void> | null;
}

/**
 * SHA-1 of an upload's staged file, advanced over its contiguous received prefix as chunks land, so
 * completion only hashes what is left of the tail. State is per process; a process that has none
 * (after a restart, or another API node) starts again from byte 0 — slower, never wrong.
 */
export class PrefixHashers {
  private readonly states = new Map<string, PrefixState>();

  /** Lets hashing run ahead up to `contiguousBytes` in the background. */
  advance(uploadId: string, filePath: string, contiguousBytes: number): void {
    const state = this.stateOf(uploadId);
    state.target = Math.max(state.target, contiguousBytes);
    if (!state.running) {
      state.running = this.run(state, filePath).finally(() => {
        state.running = null;
      });
      // a failed step leaves `hash` and `hashed` consistent; finish() simply carries on from there
      state.running.catch(() => undefined);
    }
  }

  /** Hashes the rest of a complete file of `size` bytes and returns the hex SHA-1; the state is dropped. */
  async finish(uploadId: string, filePath: string, size: number): Promise<string> {
    const state = this.stateOf(uploadId);
    state.target = size;
    while (state.running) await state.running.catch(() => undefined);
    if (state.hashed < size) await this.run(state, filePath);
    this.states.delete(uploadId);
    const handle = await fsp.open(filePath, 'r+');
    try {
      await handle.datasync();
    } finally {
      await handle.close();
    }
    return state.hash.digest('hex');
  }

  drop(uploadId: string): void {
    this.states.delete(uploadId);
  }

  private stateOf(uploadId: string): PrefixState {
    let state = this.states.get(uploadId);
    if (!state) {
      state = { hash: createHash('sha1'), hashed: 0, target: 0, sinceSync: 0, running: null };
      this.states.set(uploadId, state);
    }
    return state;
  }

  private async run(state: PrefixState, filePath: string): Promise<void> {
    const handle = await fsp.open(filePath, 'r');
    try {
      const buffer = Buffer.allocUnsafe(READ_SIZE);
      while (state.hashed < state.target) {
        const want = Math.min(READ_SIZE, state.target - state.hashed);
        const { bytesRead } = await handle.read(buffer, 0, want, state.hashed);
        if (bytesRead === 0) throw new Error(`staged file ended at ${state.hashed} bytes`);
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
}
