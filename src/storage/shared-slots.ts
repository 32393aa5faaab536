const WASM_PAGE = 64 * 1024;

/** Bytes written to a file at `position` and, until released or evicted, still in memory. */
export interface LandedBytes {
  readonly position: number;
  readonly bytes: Buffer;
  /** True if the bytes are still in memory, which they then stay until release(); false once evicted. */
  pin(): boolean;
  release(): void;
}

/**
 * Reusable buffers of `slotBytes` carved from slabs of shared memory, so the hashing thread reads a
 * written slot without a copy. The slabs are WebAssembly memory, which is page-aligned as O_DIRECT
 * wants (Node's ArrayBuffers come from malloc: 16-byte aligned). A slot goes back to the spare list once
 * its write has landed, or once it is no longer kept; the set grows to the most ever used at once and
 * is never freed.
 */
export class SharedSlots {
  private readonly spare: Buffer[] = [];
  private readonly evictable = new Set<KeptSlot>();
  private kept = 0;
  private roomWaiters: Array<() => void> = [];

  constructor(
    readonly slotBytes: number,
    private readonly slotsPerSlab: number,
    private readonly maxKept: number,
  ) {
    if (slotBytes % WASM_PAGE !== 0) throw new Error(`slotBytes must be a multiple of ${WASM_PAGE}`);
  }

  take(): Buffer {
    const slot = this.spare.pop();
    if (slot) return slot;
    const pages = (this.slotBytes * this.slotsPerSlab) / WASM_PAGE;
    const slab = Buffer.from(new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true }).buffer);
    for (let at = this.slotBytes; at < slab.length; at += this.slotBytes) this.spare.push(slab.subarray(at, at + this.slotBytes));
    return slab.subarray(0, this.slotBytes);
  }

  give(slot: Buffer): void {
    this.spare.push(slot);
  }

  /**
   * Keeps a written slot in memory for the hash, at most `maxKept` at once. `distance()` tells how far
   * ahead of its hash the slot lies, now. With the budget full, the kept slot that lies farthest ahead
   * is evicted for one that lies nearer; else the slot is not kept (null) and stays the caller's. Keeping
   * the first ones that came let slots far ahead fill the budget while the hash's own next bytes went to
   * be read back from the file (then from the disk: it was written with O_DIRECT); the hash fell behind
   * and stayed there (up to 80% of 1 GiB read back).
   */
  keep(slot: Buffer, bytes: Buffer, position: number, distance: () => number): LandedBytes | null {
    if (this.kept >= this.maxKept) {
      const farthest = this.farthestBeyond(distance());
      if (!farthest) return null;
      farthest.release();
    }
    this.kept += 1;
    const kept = new KeptSlot(this, slot, bytes, position, distance);
    this.evictable.add(kept);
    return kept;
  }

  /** Whether keep() would keep a slot lying `distance` ahead of its hash now. */
  wouldKeep(distance: number): boolean {
    return this.kept < this.maxKept || this.farthestBeyond(distance) !== null;
  }

  /** Resolves once keep() would keep a slot `distance()` ahead, or after `ms`; returns the ms waited. */
  async waitForRoom(distance: () => number, ms: number): Promise<number> {
    const started = performance.now();
    for (let left = ms; left > 0 && !this.wouldKeep(distance()); left = ms - (performance.now() - started)) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.roomWaiters.push(() => (clearTimeout(timer), resolve()));
      });
    }
    return performance.now() - started;
  }

  /** The evictable slot lying farthest ahead of its hash, if it lies farther than `distance`. */
  private farthestBeyond(distance: number): KeptSlot | null {
    let farthest: KeptSlot | null = null;
    let farthestDistance = distance;
    for (const candidate of this.evictable) {
      const candidateDistance = candidate.distance();
      if (candidateDistance > farthestDistance) [farthest, farthestDistance] = [candidate, candidateDistance];
    }
    return farthest;
  }

  /** @internal KeptSlot's side of the budget. */
  pinned(kept: KeptSlot): void {
    this.evictable.delete(kept);
  }

  /** @internal KeptSlot's side of the budget. */
  released(kept: KeptSlot, slot: Buffer): void {
    this.evictable.delete(kept);
    this.kept -= 1;
    this.give(slot);
    const waiters = this.roomWaiters;
    this.roomWaiters = [];
    for (const wake of waiters) wake();
  }
}

class KeptSlot implements LandedBytes {
  private state: 'evictable' | 'pinned' | 'gone' = 'evictable';

  constructor(
    private readonly owner: SharedSlots,
    private readonly slot: Buffer,
    readonly bytes: Buffer,
    readonly position: number,
    readonly distance: () => number,
  ) {}

  pin(): boolean {
    if (this.state === 'gone') return false;
    this.state = 'pinned';
    this.owner.pinned(this);
    return true;
  }

  release(): void {
    // once only: a slot given back twice would be handed to two writers
    if (this.state === 'gone') return;
    this.state = 'gone';
    this.owner.released(this, this.slot);
  }
}
