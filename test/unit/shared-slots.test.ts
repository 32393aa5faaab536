import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { SharedSlots } from '../../src/storage/shared-slots.js';

const SLOT = 64 * 1024;

/** A budget of `maxKept` slots, and a helper that writes a marker into a fresh slot and asks to keep it. */
function budget(maxKept: number) {
  const buffers = new SharedSlots(SLOT, 4, maxKept);
  const keepAt = (distance: number, marker: number) => {
    const slot = buffers.take();
    slot.fill(marker);
    const kept = buffers.keep(slot, slot, distance * SLOT, () => distance);
    if (!kept) buffers.give(slot);
    return kept;
  };
  return { buffers, keepAt };
}

describe('the budget of written slots kept in memory for the hash', () => {
  it('keeps slots while the budget allows, and then evicts the one farthest ahead for a nearer one', () => {
    const { keepAt } = budget(2);
    const far = keepAt(30, 1)!;
    const farther = keepAt(40, 2)!;
    const near = keepAt(5, 3)!;

    expect(near).not.toBeNull();
    expect(farther.pin()).toBe(false);
    expect(far.pin()).toBe(true);
    expect(near.bytes[0]).toBe(3);
    expect(far.bytes[0]).toBe(1);
  });

  it('does not keep a slot that lies farther ahead than every kept one', () => {
    const { keepAt } = budget(2);
    const a = keepAt(1, 1)!;
    const b = keepAt(2, 2)!;

    expect(keepAt(3, 3)).toBeNull();
    expect(a.pin()).toBe(true);
    expect(b.pin()).toBe(true);
  });

  it('never evicts a pinned slot (the hash is reading it), so its bytes stay as written', () => {
    const { keepAt } = budget(1);
    const reading = keepAt(50, 7)!;
    expect(reading.pin()).toBe(true);

    expect(keepAt(0, 9)).toBeNull();
    expect(reading.bytes.every((byte) => byte === 7)).toBe(true);
  });

  it('gives an evicted or released slot back once only, so no slot is handed to two writers', () => {
    const { buffers, keepAt } = budget(1);
    const evicted = keepAt(10, 1)!;
    const kept = keepAt(0, 2)!;
    evicted.release();
    kept.release();
    kept.release();

    // a slot given back twice would sit twice in the spare list and come out twice
    const handedOut = new Set(Array.from({ length: 5 }, () => buffers.take()));
    expect(handedOut.size).toBe(5);
  });

  it('lets a writer wait for room: not when there is some, else until a release or until its time is up', async () => {
    const { buffers, keepAt } = budget(1);
    expect(await buffers.waitForRoom(() => 5, 1_000)).toBeLessThan(50);

    const held = keepAt(1, 1)!;
    setTimeout(() => held.release(), 30);
    const untilRelease = await buffers.waitForRoom(() => 5, 10_000);
    expect(untilRelease).toBeGreaterThanOrEqual(20);
    expect(untilRelease).toBeLessThan(5_000);

    keepAt(1, 2);
    const gaveUp = await buffers.waitForRoom(() => 5, 60);
    expect(gaveUp).toBeGreaterThanOrEqual(50);
    expect(gaveUp).toBeLessThan(1_000);
  });
});

describe('slot memory', () => {
  it('is page-aligned: every slot of a slab is written with O_DIRECT, and reads back as written', (ctx) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'filestore-slots-'));
    const file = path.join(dir, 'direct');
    const { O_CREAT, O_WRONLY, O_DIRECT } = fs.constants;
    let fd: number;
    try {
      fd = fs.openSync(file, O_CREAT | O_WRONLY | O_DIRECT);
    } catch (error) {
      fs.rmSync(dir, { recursive: true });
      if ((error as NodeJS.ErrnoException).code === 'EINVAL') return ctx.skip();
      throw error;
    }
    const slots = new SharedSlots(SLOT, 4, 4);
    const taken = Array.from({ length: 4 }, (_, index) => slots.take().fill(index + 1));
    try {
      // an address that is not a whole page would fail here with EINVAL
      taken.forEach((slot, index) => expect(fs.writeSync(fd, slot, 0, SLOT, index * SLOT)).toBe(SLOT));
    } finally {
      fs.closeSync(fd);
    }
    const written = fs.readFileSync(file);
    fs.rmSync(dir, { recursive: true });
    expect(written.equals(Buffer.concat(taken))).toBe(true);
  });
});
