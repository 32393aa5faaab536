import { createHash, randomBytes, randomInt, timingSafeEqual } from 'node:crypto';
import type { ByteRange } from '../storage/blob-store.js';

export const PROOF_MIN_SIZE = 1024 * 1024;
export const CHALLENGE_TTL_MS = 10 * 60 * 1000;
export const MAX_WRONG_PROOFS = 5;
export const WRONG_PROOF_WINDOW_SECONDS = 3600;

/** Wrong proofs are counted per user and sha1. */
export const proofThrottleKey = (userId: string, sha1: string): string => `proof-fail:${userId}:${sha1}`;
const RANGE_COUNT = 3;
const MAX_RANGE_LENGTH = 64 * 1024;

export interface Challenge {
  nonce: string;
  ranges: Array<{ offset: number; length: number }>;
}

/**
 * A fresh challenge for content of `size` bytes: a random 16-byte nonce and 3 random ranges of up to
 * 64 KiB. Knowing the SHA-1 does not answer it; only holding the bytes does.
 */
export function makeChallenge(size: number): Challenge {
  const length = Math.min(MAX_RANGE_LENGTH, size);
  return {
    nonce: randomBytes(16).toString('hex'),
    ranges: Array.from({ length: RANGE_COUNT }, () => ({ offset: randomInt(0, size - length + 1), length })),
  };
}

export function toByteRange(range: { offset: number; length: number }): ByteRange {
  return { start: range.offset, end: range.offset + range.length - 1 };
}

/** hex SHA-256(nonce bytes ‖ bytes of range 1 ‖ range 2 ‖ range 3): the answer the client must send. */
export function expectedProof(nonce: string, rangeBytes: Buffer[]): string {
  const hash = createHash('sha256').update(Buffer.from(nonce, 'hex'));
  for (const bytes of rangeBytes) hash.update(bytes);
  return hash.digest('hex');
}

export function proofMatches(expected: string, presented: string): boolean {
  const a = Buffer.from(expected, 'hex');
  const b = Buffer.from(presented, 'hex');
  return a.length === b.length && timingSafeEqual(a, b);
}
