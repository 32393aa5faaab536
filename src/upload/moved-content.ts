import type { UploadRow } from '../db/uploads.repository.js';
import type { ContentStore } from '../files/content-store.js';
import type { PrefixHashers } from './prefix-hasher.js';

/**
 * The stored content a completion killed midway had made of a session's bytes, found again by the
 * SHA-1 it recorded before moving them out of the staged file: the available row of that SHA-1, or else
 * a blob file of it that has no row yet, kept once its bytes hash right. Undefined when the bytes are gone
 * (or the completion died before recording what they were).
 */
export async function findMovedContent(
  deps: { content: ContentStore; hashers: PrefixHashers },
  session: UploadRow,
): Promise<{ id: number; sha1: string; size: number } | undefined> {
  const sha1 = session.verified_sha1;
  if (!sha1) return undefined;
  const stored = await deps.content.findBySha1(sha1);
  if (stored?.status === 'available') return { id: stored.id, sha1, size: session.size };
  // a blob file carries its sha1 in its name only: its bytes must prove it before any row points at them
  const matches = async (filePath: string) => (await deps.hashers.finish(`${session.id}:adopted`, filePath, session.size)) === sha1;
  const id = await deps.content.keepAdopted(sha1, session.size, matches);
  if (id !== undefined) return { id, sha1, size: session.size };
  // another completion of the same content may have kept the file first
  const keptMeanwhile = await deps.content.findBySha1(sha1);
  return keptMeanwhile?.status === 'available' ? { id: keptMeanwhile.id, sha1, size: session.size } : undefined;
}
