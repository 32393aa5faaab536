/** What O_DIRECT asks of a write's memory address, file position and length (a page covers every device). */
export const DIRECT_IO_ALIGNMENT = 4096;

const WASM_PAGE = 64 * 1024;

/**
 * Reusable buffers of `slotBytes` at page-aligned addresses, for O_DIRECT writes: Node's own Buffers are
 * only 16-byte aligned, but WebAssembly memory is page-aligned, so slots are carved from slabs of it. The
 * memory is shared (a SharedArrayBuffer), so a worker thread can read a slot without a copy. A slot goes
 * back to the spare list once its write has landed, or once it is no longer kept; the set grows to the
 * most ever used at once and is never freed.
 */
export class AlignedBuffers {
  private readonly spare: Buffer[] = [];
  private kept = 0;

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

  /** Counts one more slot kept past its write; false once `maxKept` are (memory stays bounded). */
  tryKeep(): boolean {
    if (this.kept >= this.maxKept) return false;
    this.kept += 1;
    return true;
  }

  /** Gives back a slot that tryKeep counted. */
  giveKept(slot: Buffer): void {
    this.kept -= 1;
    this.give(slot);
  }
}
