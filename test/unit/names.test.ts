import { describe, expect, it } from 'vitest';
import { AppError } from '../../src/errors.js';
import { assertValidName, nameProblem, normalizeFolder, normalizeFolderToFind } from '../../src/files/names.js';

/** The AppError code `fn` throws, or a failure when it does not throw one. */
function thrownCode(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(AppError);
    return (error as AppError).code;
  }
  throw new Error('expected an AppError to be thrown');
}

describe('nameProblem / assertValidName', () => {
  it.each(['report.pdf', 'a', 'with space.txt', 'ünïcödé – 名前.md', '...', '.hidden', 'a..b', 'x'.repeat(255)])(
    'accepts the ordinary name %j',
    (name) => {
      expect(nameProblem(name)).toBeNull();
      expect(assertValidName(name)).toBe(name);
    },
  );

  it('rejects the empty name', () => {
    expect(nameProblem('')).toMatch(/empty/);
    expect(thrownCode(() => assertValidName(''))).toBe('invalid_name');
  });

  it.each(['.', '..'])('rejects %j as a name', (name) => {
    expect(nameProblem(name)).not.toBeNull();
    expect(thrownCode(() => assertValidName(name))).toBe('invalid_name');
  });

  it.each([
    ['a slash', 'a/b'],
    ['a leading slash', '/etc'],
    ['a backslash', 'a\\b'],
    ['a NUL byte', 'a\u0000b'],
    ['a newline', 'line\nbreak'],
    ['a tab', 'tab\there'],
    ['a carriage return', 'cr\r'],
    ['an escape character', '\u001b[31mred'],
    ['the unit separator 0x1f', 'a\u001fb'],
    ['DEL (0x7f)', 'a\u007fb'],
    ['a lone high surrogate', 'a\ud800b'],
    ['a lone low surrogate at the end', 'ab\udfff'],
    ['a surrogate pair the wrong way round', '\ude00\ud83d'],
  ])('rejects a name containing %s', (_label, name) => {
    expect(nameProblem(name)).not.toBeNull();
    expect(thrownCode(() => assertValidName(name))).toBe('invalid_name');
  });

  it.each([
    ['C1 0x80', 'a\u0080b'],
    ['NEL (0x85), a line break', 'a\u0085b'],
    ['CSI (0x9b), an escape sequence start', '\u009b31mred'],
    ['C1 0x9f', 'a\u009fb'],
  ])('rejects a name containing the C1 control character %s', (_label, name) => {
    expect(nameProblem(name)).toMatch(/control characters/);
    expect(thrownCode(() => assertValidName(name))).toBe('invalid_name');
  });

  it.each([
    ['LRE', '\u202a'],
    ['RLE', '\u202b'],
    ['PDF', '\u202c'],
    ['LRO', '\u202d'],
    ['RLO', '\u202e'],
    ['LRI', '\u2066'],
    ['RLI', '\u2067'],
    ['FSI', '\u2068'],
    ['PDI', '\u2069'],
  ])('rejects a name containing the bidirectional control %s', (_label, bidi) => {
    const name = `invoice${bidi}fdp.exe`;
    expect(nameProblem(name)).toMatch(/bidirectional/);
    expect(thrownCode(() => assertValidName(name))).toBe('invalid_name');
  });

  it.each([
    ['LRM (U+200E)', 'report\u200e.pdf'],
    ['RLM (U+200F) after RTL text and digits', 'דוח 2024\u200f.pdf'],
    ['ALM (U+061C)', 'تقرير\u061c.pdf'],
    ['NBSP (U+00A0), the first character after C1', 'a\u00a0b'],
    ['a ZWJ emoji sequence', '👩\u200d💻.txt'],
  ])('keeps a name with %s', (_label, name) => {
    expect(nameProblem(name)).toBeNull();
  });

  it('accepts a name of exactly 255 UTF-8 bytes', () => {
    const ascii = 'a'.repeat(255);
    const mixed = '€'.repeat(85); // 85 × 3 bytes = 255
    expect(Buffer.byteLength(mixed, 'utf8')).toBe(255);
    expect(nameProblem(ascii)).toBeNull();
    expect(nameProblem(mixed)).toBeNull();
  });

  it('rejects a name of 256 UTF-8 bytes', () => {
    expect(nameProblem('a'.repeat(256))).toMatch(/255 bytes/);
    expect(thrownCode(() => assertValidName('a'.repeat(256)))).toBe('invalid_name');
  });

  it('counts bytes, not characters: 100 three-byte characters (300 bytes) are rejected', () => {
    const name = '€'.repeat(100);
    expect(name.length).toBe(100);
    expect(Buffer.byteLength(name, 'utf8')).toBe(300);
    expect(nameProblem(name)).toMatch(/255 bytes/);
    expect(thrownCode(() => assertValidName(name))).toBe('invalid_name');
  });

  it('counts a 4-byte emoji as 4 bytes', () => {
    expect(nameProblem('😀'.repeat(63) + 'abc')).toBeNull(); // 252 + 3 = 255
    expect(nameProblem('😀'.repeat(64))).not.toBeNull(); // 256
  });
});

describe('normalizeFolder', () => {
  it('keeps the root "/" as is', () => {
    expect(normalizeFolder('/')).toBe('/');
  });

  it('keeps a canonical path unchanged', () => {
    expect(normalizeFolder('/a')).toBe('/a');
    expect(normalizeFolder('/a/b')).toBe('/a/b');
    expect(normalizeFolder('/docs/2024/Q1 report')).toBe('/docs/2024/Q1 report');
  });

  it('drops one trailing slash: "/a/b/" becomes "/a/b"', () => {
    expect(normalizeFolder('/a/b/')).toBe('/a/b');
    expect(normalizeFolder('/a/')).toBe('/a');
  });

  it.each(['a/b', 'a', '', 'docs/'])('rejects the relative path %j', (input) => {
    expect(thrownCode(() => normalizeFolder(input))).toBe('invalid_path');
  });

  it.each(['/a/../b', '/..', '/a/..', '/../etc', '/a/./b', '/.', '/./'])(
    'rejects %j instead of resolving its "." or ".." segment',
    (input) => {
      expect(thrownCode(() => normalizeFolder(input))).toBe('invalid_path');
    },
  );

  it.each(['/a//b', '//a', '/a/b//', '/a///'])('rejects %j, which has an empty segment', (input) => {
    expect(thrownCode(() => normalizeFolder(input))).toBe('invalid_path');
  });

  it.each([
    ['a backslash', '/a\\b'],
    ['a NUL byte', '/a\u0000/b'],
    ['a newline', '/a/b\nc'],
    ['a lone surrogate', '/a/b\ud800c'],
    ['a C1 control character', '/a/b\u0085c'],
    ['a right-to-left override', '/a/gpj\u202eexe'],
    ['a first-strong isolate', '/a\u2068b'],
  ])('rejects a segment containing %s', (_label, input) => {
    expect(thrownCode(() => normalizeFolder(input))).toBe('invalid_path');
  });

  it('rejects a segment longer than 255 UTF-8 bytes', () => {
    expect(thrownCode(() => normalizeFolder('/' + '€'.repeat(100)))).toBe('invalid_path');
    expect(normalizeFolder('/' + '€'.repeat(85))).toBe('/' + '€'.repeat(85));
  });

  it('names the offending segment in the error message', () => {
    expect(() => normalizeFolder('/ok/../x')).toThrow(/".."/);
  });
});

describe('normalizeFolderToFind', () => {
  it('reaches a folder whose segments a new name could no longer have', () => {
    expect(normalizeFolderToFind('/a\u202eb/c\u0085d/')).toBe('/a\u202eb/c\u0085d');
    expect(normalizeFolderToFind('/')).toBe('/');
  });

  it.each(['a', '', '/a/..', '/./a', '/a//b', '//', '/a/b\ud800'])('still refuses the malformed path %j', (input) => {
    expect(thrownCode(() => normalizeFolderToFind(input))).toBe('invalid_path');
  });
});
