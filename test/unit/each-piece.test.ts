import { PassThrough, Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { eachPiece } from '../../src/storage/each-piece.js';

const pieces = (...texts: string[]) => texts.map((text) => Buffer.from(text));

describe('eachPiece', () => {
  it('hands every piece over in order and resolves at the end, waiting for the last piece’s promise', async () => {
    const seen: string[] = [];
    let lastDone = false;
    await eachPiece(Readable.from(pieces('a', 'b', 'c')), (piece) => {
      seen.push(piece.toString());
      if (piece.toString() !== 'c') return undefined;
      return sleep(30).then(() => {
        lastDone = true;
      });
    });
    expect(seen).toEqual(['a', 'b', 'c']);
    expect(lastDone).toBe(true);
  });

  it('takes no piece while an earlier piece’s promise is pending', async () => {
    const source = new PassThrough();
    const events: string[] = [];
    const done = eachPiece(source, (piece) => {
      events.push(`take ${piece.toString()}`);
      return sleep(20).then(() => void events.push(`done ${piece.toString()}`));
    });
    source.write('1');
    source.write('2');
    source.end('3');
    await done;
    expect(events).toEqual(['take 1', 'done 1', 'take 2', 'done 2', 'take 3', 'done 3']);
  });

  it('rejects with the stream’s error only after the pending piece’s promise has settled', async () => {
    const source = new PassThrough();
    let writeDone = false;
    const done = eachPiece(source, () => sleep(30).then(() => void (writeDone = true)));
    source.write('x');
    await sleep(5);
    source.destroy(new Error('connection reset'));
    await expect(done).rejects.toThrow('connection reset');
    expect(writeDone).toBe(true);
  });

  it('rejects when the stream closes before its end, also when that happened before it was called', async () => {
    const cut = new PassThrough();
    const done = eachPiece(cut, () => undefined);
    cut.write('x');
    cut.destroy();
    await expect(done).rejects.toMatchObject({ code: 'ERR_STREAM_PREMATURE_CLOSE' });

    const failedEarlier = new PassThrough();
    failedEarlier.destroy(new Error('Unexpected end of form'));
    await expect(eachPiece(failedEarlier, () => undefined)).rejects.toThrow('Unexpected end of form');
  });

  it('rejects with take’s failure, destroying the source, or only pausing it when asked to keep it', async () => {
    const destroyed = new PassThrough();
    destroyed.write('x');
    await expect(eachPiece(destroyed, () => { throw new Error('too long'); })).rejects.toThrow('too long');
    expect(destroyed.destroyed).toBe(true);

    const kept = new PassThrough();
    kept.write('x');
    await expect(eachPiece(kept, () => Promise.reject(new Error('disk full')), { destroyOnFailure: false })).rejects.toThrow('disk full');
    expect(kept.destroyed).toBe(false);
    expect(kept.isPaused()).toBe(true);
  });
});
