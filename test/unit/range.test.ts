import { describe, expect, it } from 'vitest';
import { parseRange } from '../../src/http/range.js';

// Ranges are inclusive on both ends, as in Content-Range: { start: 0, end: 9 } is ten bytes.
describe('parseRange', () => {
  it('serves the whole representation when there is no Range header', () => {
    expect(parseRange(undefined, 100)).toBeNull();
  });

  describe('first-last ranges', () => {
    it('bytes=0-9 is the first ten bytes', () => {
      expect(parseRange('bytes=0-9', 100)).toEqual({ start: 0, end: 9 });
    });

    it('bytes=10-19 is a range from the middle', () => {
      expect(parseRange('bytes=10-19', 100)).toEqual({ start: 10, end: 19 });
    });

    it('bytes=0-0 is the single first byte', () => {
      expect(parseRange('bytes=0-0', 100)).toEqual({ start: 0, end: 0 });
    });

    it('bytes=99-99 is the single last byte', () => {
      expect(parseRange('bytes=99-99', 100)).toEqual({ start: 99, end: 99 });
    });

    it('clamps a last position beyond the end to the last byte', () => {
      expect(parseRange('bytes=0-999', 100)).toEqual({ start: 0, end: 99 });
      expect(parseRange('bytes=50-100', 100)).toEqual({ start: 50, end: 99 });
    });

    it('clamps an absurdly large last position too', () => {
      expect(parseRange('bytes=0-99999999999999999999', 100)).toEqual({ start: 0, end: 99 });
    });

    it('tolerates whitespace around the header and the numbers', () => {
      expect(parseRange('  bytes=0-9  ', 100)).toEqual({ start: 0, end: 9 });
      expect(parseRange('bytes= 0 - 9', 100)).toEqual({ start: 0, end: 9 });
    });
  });

  describe('open-ended ranges', () => {
    it('bytes=5- runs from byte 5 to the end', () => {
      expect(parseRange('bytes=5-', 100)).toEqual({ start: 5, end: 99 });
    });

    it('bytes=0- is the whole representation as one range', () => {
      expect(parseRange('bytes=0-', 100)).toEqual({ start: 0, end: 99 });
    });

    it('bytes=99- is the last byte', () => {
      expect(parseRange('bytes=99-', 100)).toEqual({ start: 99, end: 99 });
    });
  });

  describe('suffix ranges', () => {
    it('bytes=-3 is the last three bytes', () => {
      expect(parseRange('bytes=-3', 100)).toEqual({ start: 97, end: 99 });
    });

    it('a suffix longer than the representation is the whole representation', () => {
      expect(parseRange('bytes=-500', 100)).toEqual({ start: 0, end: 99 });
      expect(parseRange('bytes=-100', 100)).toEqual({ start: 0, end: 99 });
    });

    it('bytes=-0 asks for nothing and is unsatisfiable', () => {
      expect(parseRange('bytes=-0', 100)).toBe('unsatisfiable');
    });
  });

  describe('unsatisfiable ranges (answered with 416)', () => {
    it('a first position equal to the size is unsatisfiable', () => {
      expect(parseRange('bytes=100-', 100)).toBe('unsatisfiable');
      expect(parseRange('bytes=100-200', 100)).toBe('unsatisfiable');
    });

    it('a first position beyond the end is unsatisfiable', () => {
      expect(parseRange('bytes=150-', 100)).toBe('unsatisfiable');
      expect(parseRange('bytes=150-160', 100)).toBe('unsatisfiable');
    });

    it('every range of a zero-size file is unsatisfiable', () => {
      expect(parseRange('bytes=0-', 0)).toBe('unsatisfiable');
      expect(parseRange('bytes=0-9', 0)).toBe('unsatisfiable');
      expect(parseRange('bytes=0-0', 0)).toBe('unsatisfiable');
      expect(parseRange('bytes=-5', 0)).toBe('unsatisfiable');
    });

    it('a zero-size file without a Range header is still served whole', () => {
      expect(parseRange(undefined, 0)).toBeNull();
    });
  });

  describe('syntax it does not support is ignored (null: serve the whole representation)', () => {
    it.each([
      ['an empty header', ''],
      ['no unit', '0-9'],
      ['another unit', 'items=0-9'],
      ['no range after the unit', 'bytes='],
      ['only a dash', 'bytes=-'],
      ['letters', 'bytes=a-b'],
      ['a negative number', 'bytes=--5'],
      ['a decimal number', 'bytes=1.5-9'],
      ['a missing dash', 'bytes=5'],
      ['trailing garbage', 'bytes=0-9x'],
    ])('%s (%j)', (_label, header) => {
      expect(parseRange(header, 100)).toBeNull();
    });

    it.each(['bytes=0-1,5-6', 'bytes=0-9, 20-29', 'bytes=-3,0-1', 'bytes=0-9,'])(
      'several ranges at once (%j)',
      (header) => {
        expect(parseRange(header, 100)).toBeNull();
      },
    );

    it('a last position before the first (bytes=9-5) is invalid and ignored', () => {
      expect(parseRange('bytes=9-5', 100)).toBeNull();
    });
  });
});
