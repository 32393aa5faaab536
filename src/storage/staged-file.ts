import fs from 'node:fs';
import fsp from 'node:fs/promises';
import { SharedSlots, type LandedBytes } from './shared-slots.js';

const SLOT_BYTES = 1024 * 1024;
// Up to MAX_KEPT_SLOTS stay in memory after their write, so the hash reads them there (see
// PrefixHashers) instead of reading them back from the file; with the budget full, the slots the hash
// needs soonest stay (SharedSlots.keep). Four chunks of 8 MiB in flight move in near lockstep, so up to
// 32 MiB wait ahead of the hash. Measured on a 1 GiB upload (server started as `npm start` does, young
// generation 2 MiB), when the chunks were written with O_DIRECT and read back from the disk: 12 slots
// 600–700 MiB/s; 24 slots 680–760 MiB/s, peak RSS 170–179 MiB (200 MB allowed); 48 slots 800–810 MiB/s
// but 199–200 MiB. Through the page cache, on a slower day (alternating): 12 slots 208–260, 24 slots
// 265–272 MiB/s (a quarter as much read back), both without the wait below.
const MAX_KEPT_SLOTS = 24;
const slots = new SharedSlots(SLOT_BYTES, 8, MAX_KEPT_SLOTS);
// A writer whose next slot the budget would not keep waits, for at most this long in all, for the hash
// to make room: four chunks sent in lockstep want ~32 MiB ahead of the hash, and what is read back costs
// the hash time, so it falls behind and stays there. Bounded, so a writer behind a busy budget is
// delayed, never stalled. Measured (1 GiB, alternating; O_DIRECT): no wait 637–742 MiB/s, 50 ms 615–776
// with complete 13–51 ms instead of 14–217; through the page cache: no wait 265–272, 50 ms 301–315.
const MAX_WAIT_FOR_ROOM_MS = 50;

export type { LandedBytes };

/** Who takes written slots kept in memory, and how far ahead of its hash a file position lies. */
export interface Keeper {
  distanceTo(position: number): number;
  take(bytes: LandedBytes): void;
}

/**
 * A staged upload file opened for positional writes. Where the filesystem takes O_DIRECT, whole blocks
 * go from the slot to the disk without a copy into the page cache; a buffered handle takes what O_DIRECT
 * cannot: positions or lengths that are not whole blocks (the file's tail, odd chunk sizes, tus offsets)
 * and filesystems that refuse it. The hashing thread flushes the file while it fills, and completion
 * flushes the rest (PrefixHashers), so the page cache gained nothing but a copy into pages that, on these
 * VMs, the host takes back a few seconds after they are freed: 1 GiB uploads, alternating, a fresh server
 * each: 611–867 MiB/s (median 802) against 404–606 (413) through the page cache, the other threads using
 * 0.9–1.1 CPU s per GiB against 1.5–2.7; with writes throttled to 400 MB/s for both (blkio), 379–399
 * against 368–374. On an earlier day, with the disk itself at 300–450 MB/s, O_DIRECT had lost (146–212
 * against 251–315), measured on code that also ran 27 full garbage collections per GiB (now 1).
 */
export class StagedFile {
  private constructor(
    private readonly filePath: string,
    private readonly direct: fsp.FileHandle | null,
    private buffered: Promise<fsp.FileHandle> | null,
  ) {}

  /** Opens an existing staged file (rejects with ENOENT when it is gone), or with `create` a new one. */
  static async open(filePath: string, create = false): Promise<StagedFile> {
    const { O_RDWR, O_CREAT, O_EXCL, O_DIRECT } = fs.constants;
    const flags = O_RDWR | (create ? O_CREAT | O_EXCL : 0);
    const direct = await fsp.open(filePath, flags | O_DIRECT).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'EINVAL') return null;
      throw error;
    });
    if (direct) return new StagedFile(filePath, direct, null);
    // a filesystem that refuses O_DIRECT may refuse it only after creating the file: no O_EXCL again
    return new StagedFile(filePath, null, Promise.resolve(await fsp.open(filePath, flags & ~O_EXCL)));
  }

  /** A writer of consecutive bytes from `position` on, through shared slots (see SlotWriterOptions). */
  writerAt(position: number, options: SlotWriterOptions = {}): SlotWriter {
    return new SlotWriter(this, position, options);
  }

  /** Writes all of `bytes` (a slot, or part of one) at `position`: whole blocks directly, the rest buffered. */
  async write(bytes: Buffer, position: number): Promise<void> {
    let directBytes = this.direct && position % DIRECT_IO_ALIGNMENT === 0 ? bytes.length - (bytes.length % DIRECT_IO_ALIGNMENT) : 0;
    if (directBytes > 0) {
      await writeFully(this.direct!, bytes.subarray(0, directBytes), position).catch((error: NodeJS.ErrnoException) => {
        // a device that asks more alignment than DIRECT_IO_ALIGNMENT: these bytes go buffered
        if (error.code !== 'EINVAL') throw error;
        directBytes = 0;
      });
    }
    if (directBytes < bytes.length) await writeFully(await this.bufferedHandle(), bytes.subarray(directBytes), position + directBytes);
  }

  async close(): Promise<void> {
    await this.direct?.close();
    if (this.buffered) await (await this.buffered).close();
  }

  /**
   * Closes without holding up the caller's answer (one thread-pool round trip less per chunk or PATCH):
   * the writes have landed by then, and a close adds nothing to them (the hashing thread's flush makes
   * them durable).
   */
  closeInBackground(): void {
    this.close().catch(() => undefined);
  }

  private bufferedHandle(): Promise<fsp.FileHandle> {
    this.buffered ??= fsp.open(this.filePath, 'r+');
    return this.buffered;
  }
}

/** What O_DIRECT asks of a write's memory address, file position and length (a page covers every device). */
const DIRECT_IO_ALIGNMENT = 4096;

/** A short write (a full disk) is retried from where it stopped. */
async function writeFully(handle: fsp.FileHandle, bytes: Buffer, position: number): Promise<void> {
  for (let done = 0; done < bytes.length; ) {
    done += (await handle.write(bytes, done, bytes.length - done, position + done)).bytesWritten;
  }
}

/** How a SlotWriter hands on and writes its slots. */
export interface SlotWriterOptions {
  /** Takes written slots kept in memory, as the budget allows (it must release them). */
  keeper?: Keeper;
  /** Runs before each slot is written; if it throws, nothing more is. */
  beforeWrite?: () => Promise<void>;
  /**
   * The next slot fills while the previous one is written (one slot more per writer). For a stream that
   * is its upload's only one (a tus PATCH, a form upload): there, writing a slot paused the socket and
   * nothing else filled the time. Chunk PUTs run several at once and fill it for each other.
   */
  writeBehind?: boolean;
}

/**
 * Gathers a request's pieces into a slot and writes each full slot at its position before filling the
 * next, or with writeBehind while filling it; the socket's buffer holds what arrives meanwhile. One
 * write per ~46 KiB piece cost a fifth of the event loop in thread-pool round trips; a write stream per
 * chunk hung on Node 20. For chunk PUTs, four at once, a second slot per request cost 8 MiB of peak RSS
 * for no clear gain in our runs.
 */
export class SlotWriter {
  private slot: Buffer | null = null;
  private filled = 0;
  private waitLeftMs = MAX_WAIT_FOR_ROOM_MS;
  /** With writeBehind: the previous slot's write, landing while the next slot fills. */
  private landing: Promise<void> | null = null;
  /**
   * A write that failed: nothing after it is written any more. A later slot landing beyond the failed
   * one (space freed meanwhile) would grow the file past a hole of zeros, which tus counts as received.
   */
  private failure: unknown = null;

  constructor(
    private readonly file: StagedFile,
    private position: number,
    private readonly options: SlotWriterOptions,
  ) {}

  /**
   * Gathers `piece`; a promise comes back only when a full slot is being written (or, with writeBehind,
   * when it waits for the previous one), and the next add must wait for it (most pieces only fill: no
   * promise, no microtask per ~64 KiB).
   */
  add(piece: Buffer): Promise<void> | undefined {
    for (let at = 0; at < piece.length; ) {
      this.slot ??= slots.take();
      const copied = Math.min(piece.length - at, this.slot.length - this.filled);
      // fill, not copy: V8 copies into shared memory with relaxed atomics, byte by byte when source and
      // target are not equally aligned (ten times slower); fill with a same-length value is one memcpy
      this.slot.fill(piece.subarray(at, at + copied), this.filled, this.filled + copied);
      this.filled += copied;
      at += copied;
      if (this.filled === this.slot.length) {
        const rest = piece.subarray(at);
        return this.slotFull().then(() => (rest.length > 0 ? this.add(rest) : undefined));
      }
    }
    return undefined;
  }

  /** Writes what is gathered, after any write still landing; a failed write rejects here. */
  async finish(): Promise<void> {
    await this.settleLanding();
    await this.writeGathered();
  }

  /**
   * On the way out, once a write still landing has landed (the file may be closed next): frees the slot
   * still filling (one a failure left unwritten).
   */
  async release(): Promise<void> {
    await this.landing?.catch(() => undefined);
    this.landing = null;
    if (this.slot) slots.give(this.slot);
    this.slot = null;
  }

  private async slotFull(): Promise<void> {
    if (!this.options.writeBehind) return this.writeGathered();
    await this.settleLanding();
    const write = this.writeGathered();
    // a failure surfaces at the next full slot, at finish(), and release() waits for it either way
    write.catch(() => undefined);
    this.landing = write;
  }

  private async settleLanding(): Promise<void> {
    const landing = this.landing;
    this.landing = null;
    await landing;
  }

  private writeGathered(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    const slot = this.slot;
    const length = this.filled;
    if (!slot || length === 0) return Promise.resolve();
    const position = this.position;
    this.slot = null;
    this.filled = 0;
    this.position += length;
    return this.writeSlot(slot, slot.subarray(0, length), position);
  }

  private async writeSlot(slot: Buffer, bytes: Buffer, position: number): Promise<void> {
    const { keeper, beforeWrite } = this.options;
    try {
      if (keeper && this.waitLeftMs > 0) this.waitLeftMs -= await slots.waitForRoom(() => keeper.distanceTo(position), this.waitLeftMs);
      await beforeWrite?.();
      await this.file.write(bytes, position);
    } catch (error) {
      this.failure ??= error;
      slots.give(slot);
      throw error;
    }
    const kept = keeper ? slots.keep(slot, bytes, position, () => keeper.distanceTo(position)) : null;
    if (kept) keeper!.take(kept);
    else slots.give(slot);
  }
}
