import { AppError } from '../errors.js';

const MAX_NAME_BYTES = 255;
/** Keeps (user_id, folder) indexable in MariaDB's 3072-byte key limit with utf8mb4. */
export const MAX_FOLDER_CHARS = 700;
// C0 controls, DEL and the C1 controls (U+0080–U+009F): control characters all, none of them text
// eslint-disable-next-line no-control-regex
const FORBIDDEN = /[/\\\u0000-\u001f\u007f-\u009f]/;
// Bidirectional embeddings, overrides and isolates reorder the text around them: "invoice\u202efdp.exe"
// shows as "invoiceexe.pdf" (the "Trojan Source" trick, CVE-2021-42574). LRM/RLM (U+200E/U+200F) and
// ALM (U+061C) are kept: they only set the direction of the neutral characters next to them, cannot
// reverse a run of letters, and RTL writers need them to show names with digits and extensions right.
const BIDI_CONTROL = /[\u202a-\u202e\u2066-\u2069]/;
// A UTF-16 surrogate with no partner has no UTF-8 form: storing it would turn it into U+FFFD, a
// different name than the one sent. With the u flag a proper pair is one code point and does not match.
// (String.prototype.isWellFormed says the same, but is not in the ES2022 library this compiles against.)
const LONE_SURROGATE = /\p{Surrogate}/u;

/** Why a single file or folder name is unacceptable, or null when it is fine. */
export function nameProblem(name: string): string | null {
  const shape = segmentShapeProblem(name);
  if (shape) return shape;
  if (FORBIDDEN.test(name)) return 'a name must not contain "/", "\\", NUL or control characters';
  if (BIDI_CONTROL.test(name)) return 'a name must not contain bidirectional embedding, override or isolate characters';
  if (Buffer.byteLength(name, 'utf8') > MAX_NAME_BYTES) return `a name must be at most ${MAX_NAME_BYTES} bytes`;
  return null;
}

/** What makes a segment no segment at all, or no name the database could be asked about. */
function segmentShapeProblem(segment: string): string | null {
  if (segment.length === 0) return 'a name must not be empty';
  if (segment === '.' || segment === '..') return 'a name must not be "." or ".."';
  if (LONE_SURROGATE.test(segment)) return 'a name must be valid Unicode: no unpaired UTF-16 surrogate';
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
  return canonicalFolder(input, nameProblem);
}

/**
 * A folder that is looked up (listed, deleted), not made: it needs the path's shape, not the name rules,
 * so a folder stored before a character was refused stays reachable. Made folders obey normalizeFolder.
 */
export function normalizeFolderToFind(input: string): string {
  return canonicalFolder(input, segmentShapeProblem);
}

function canonicalFolder(input: string, segmentProblem: (segment: string) => string | null): string {
  if (!input.startsWith('/')) throw new AppError('invalid_path', 'a folder path must start with "/"');
  // only one trailing "/" is dropped: "//" would otherwise slip through as the root
  const trimmed = input.length > 1 && input.endsWith('/') ? input.slice(0, -1) : input;
  if (trimmed === '/' && input !== '/') throw new AppError('invalid_path', 'a folder path must not contain an empty segment');
  if (trimmed === '/') return '/';
  const segments = trimmed.slice(1).split('/');
  for (const segment of segments) {
    const problem = segmentProblem(segment);
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
