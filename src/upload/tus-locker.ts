import { MemoryLocker } from '@tus/server';
import type { Lock, Locker } from '@tus/utils';

/**
 * The Locker @tus/server takes an upload's lock with, which can also take it only while nobody holds it:
 * the expiry sweep's way. Lock.lock() waits for the holder and asks it to let go (a PATCH asked stops
 * and saves what it received), so a sweep taking the lock that way would cut a PATCH in progress; it
 * leaves such an upload to its next run instead.
 */
export interface TusLocker extends Locker {
  /** Upload `id`'s lock, taken at once, or null while someone holds it (who is not asked to let go). */
  lockIfFree(id: string): Promise<Lock | null>;
  /**
   * Whether a request of this process still holds upload `id`'s lock: one whose holder froze past its
   * lease (the cluster's) may have been taken by another process, and its writes must stop.
   */
  stillHeld(id: string): Promise<boolean>;
}

/** A holder that lets go only when it is done: taking the lock if free is for brief work. */
const keepUntilDone = () => undefined;

/** @tus/server's in-process locker (the embedded profile's, one process) with lockIfFree. */
export class MemoryTusLocker extends MemoryLocker implements TusLocker {
  async lockIfFree(id: string): Promise<Lock | null> {
    if (this.locks.has(id)) return null;
    const lock = this.newLock(id);
    // lock() registers a free id before its first await: nothing can take the id between the check and
    // here, so no holder is ever asked to let go
    await lock.lock(new AbortController().signal, keepUntilDone);
    return lock;
  }

  /** A lock in this one process is held until it is unlocked. */
  async stillHeld(id: string): Promise<boolean> {
    return this.locks.has(id);
  }
}
