/** What O_DIRECT asks of a write's memory address, file position and length (a page covers every device). */
export const DIRECT_IO_ALIGNMENT = 4096;

const WASM_PAGE = 64 * 1024;

/**
 * Reusable buffers of `slotBytes` at page-aligned addresses, for O_DIRECT writes: Node's own Buffers are
 * only 16-byte aligned, but WebAssembly memory is page-aligned, so slots are carved from slabs of it. A
 * slot goes back to the spare list once its write has landed; the set grows to the most ever used at
 * once and is never freed.
 */
export class AlignedBuffers {
  private readonly spare: Buffer[] = [];

  constructor(
    readonly slotBytes: number,
    private readonly slotsPerSlab: number,
  ) {
    if (slotBytes % WASM_PAGE !== 0) throw new Error(`slotBytes must be a multiple of ${WASM_PAGE}`);
  }

  take(): Buffer {
    const slot = this.spare.pop();
    if (slot) return slot;
    const slab = Buffer.from(new WebAssembly.Memory({ initial: (this.slotBytes * this.slotsPerSlab) / WASM_PAGE }).buffer);
    for (let at = this.slotBytes; at < slab.length; at += this.slotBytes) this.spare.push(slab.subarray(at, at + this.slotBytes));
    return slab.subarray(0, this.slotBytes);
  }

  give(slot: Buffer): void {
    this.spare.push(slot);
  }
}
