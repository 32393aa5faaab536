import { AppError } from '../errors.js';

const MAX_NAME_BYTES = 255;
/** Keeps (user_id, folder) indexable in MariaDB's 3072-byte key limit with utf8mb4. */
export const MAX_FOLDER_CHARS = 700;
// eslint-disable-next-line no-control-regex
const FORBIDDEN = /[/\\\u0000-\u001f\u007f]/;
// A UTF-16 surrogate with no partner has no UTF-8 form: storing it would turn it into U+FFFD, a
// different name than the one sent. With the u flag a proper pair is one code point and does not match.
// (String.prototype.isWellFormed says the same, but is not in the ES2022 library this compiles against.)
const LONE_SURROGATE = /\p{Surrogate}/u;

/** Why a single file or folder name is unacceptable, or null when it is fine. */
export function nameProblem(name: string): string | null {
  if (name.length === 0) return 'a name must not be empty';
  if (name === '.' || name === '..') return 'a name must not be "." or ".."';
  if (FORBIDDEN.test(name)) return 'a name must not contain "/", "\\", NUL or control characters';
  if (LONE_SURROGATE.test(name)) return 'a name must be valid Unicode: no unpaired UTF-16 surrogate';
  if (Buffer.byteLength(name, 'utf8') > MAX_NAME_BYTES) return `a name must be at most ${MAX_NAME_BYTES} bytes`;
  return null;
}

export function assertValidName(name: string): string {
  const problem = nameProblem(name);
  if (problem) throw new AppError('invalid_name', problem);
  return name;
}

/**
 * Canonical absolute folder path: "/" or "/a/b". Segments obey the name rules, so "." and ".." are
 * rejected, never resolved; a trailing "/" is dropped.
 */
export function normalizeFolder(input: string): string {
  if (!input.startsWith('/')) throw new AppError('invalid_path', 'a folder path must start with "/"');
  // only one trailing "/" is dropped: "//" would otherwise slip through as the root
  const trimmed = input.length > 1 && input.endsWith('/') ? input.slice(0, -1) : input;
  if (trimmed === '/' && input !== '/') throw new AppError('invalid_path', 'a folder path must not contain an empty segment');
  if (trimmed === '/') return '/';
  const segments = trimmed.slice(1).split('/');
  for (const segment of segments) {
    const problem = nameProblem(segment);
    if (problem) throw new AppError('invalid_path', `folder segment ${JSON.stringify(segment)}: ${problem}`);
  }
  if (trimmed.length > MAX_FOLDER_CHARS) throw new AppError('invalid_path', `a folder path must be at most ${MAX_FOLDER_CHARS} characters`);
  return trimmed;
}

/** "/a/b/c" → ["/a", "/a/b", "/a/b/c"]: the folder and its ancestors below the root. */
export function folderChain(folder: string): string[] {
  if (folder === '/') return [];
  const segments = folder.slice(1).split('/');
  return segments.map((_, i) => '/' + segments.slice(0, i + 1).join('/'));
}

export function parentOf(folder: string): string {
  const cut = folder.lastIndexOf('/');
  return cut <= 0 ? '/' : folder.slice(0, cut);
}

export function baseName(folder: string): string {
  return folder.slice(folder.lastIndexOf('/') + 1);
}
