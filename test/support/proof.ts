import { randomBytes } from 'node:crypto';
import { expect } from 'vitest';
import { newUser, sha1 } from './files.js';
import type { RunningApp } from './app.js';
import type { Challenge } from './uploads.js';

export type User = Awaited<ReturnType<typeof newUser>>;

/** Content `owner` has stored (multipart), for others to claim by proof. */
export async function stored(app: RunningApp, owner: User, size: number) {
  const bytes = randomBytes(size);
  const up = await owner.upload('/api/files', { name: `original-${sha1(bytes).slice(0, 8)}.bin`, bytes });
  if (up.status !== 201) throw new Error(`seed upload: ${up.status} ${up.text}`);
  return { bytes, hash: sha1(bytes), file: up.json };
}

/** POST /api/uploads for `bytes` with their sha1 declared. */
export const ask = (client: User, bytes: Buffer, name: string, folder = '/') =>
  client.post('/api/uploads', { name, folder, size: bytes.length, sha1: sha1(bytes) });

/** Asserts a 200 proof answer with a well-formed challenge inside content of `size` bytes. */
export function expectChallenge(answer: { status: number; json: any }, size: number): Challenge {
  expect(answer.status).toBe(200);
  expect(answer.json.mode).toBe('proof');
  expect(answer.json.uploadId).toMatch(/^[0-9a-f-]{36}$/);
  const challenge = answer.json.challenge as Challenge;
  expect(challenge.nonce).toMatch(/^[0-9a-f]{32}$/);
  expect(challenge.ranges).toHaveLength(3);
  for (const { offset, length } of challenge.ranges) {
    expect(length).toBeGreaterThan(0);
    expect(offset).toBeGreaterThanOrEqual(0);
    expect(offset + length).toBeLessThanOrEqual(size);
  }
  return challenge;
}

/** `count` open proof sessions of `client` for `bytes`, each under its own name. */
export async function openChallenges(client: User, bytes: Buffer, count: number): Promise<Array<{ id: string; challenge: Challenge }>> {
  const sessions = [];
  for (let n = 0; n < count; n++) {
    const asked = await ask(client, bytes, `try-${n}-${Math.random().toString(36).slice(2, 8)}.bin`);
    sessions.push({ id: asked.json.uploadId as string, challenge: expectChallenge(asked, bytes.length) });
  }
  return sessions;
}
