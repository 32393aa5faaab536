import { createHash, randomBytes } from 'node:crypto';
import type { ApiClient } from './client.js';
import { sha1 } from './files.js';

export const KiB = 1024;
export const MiB = 1024 * 1024;

/** The bytes of chunk `index` of `source` cut into `chunkSize` pieces. */
export const chunkOf = (source: Buffer, chunkSize: number, index: number): Buffer =>
  source.subarray(index * chunkSize, Math.min(source.length, (index + 1) * chunkSize));

export function putChunk(client: ApiClient, uploadId: string, index: number | string, body: Buffer, headers: Record<string, string> = {}) {
  return client.request('PUT', `/api/uploads/${uploadId}/chunks/${index}`, {
    body: new Uint8Array(body), // a copy: fetch's BodyInit wants a plain ArrayBuffer view
    headers: { 'content-type': 'application/octet-stream', ...headers },
  });
}

export function shuffled<T>(items: T[]): T[] {
  const copy = [...items];
  for (let i = copy.length - 1; i > 0; i--) {
    const j = randomBytes(4).readUInt32BE() % (i + 1);
    [copy[i], copy[j]] = [copy[j]!, copy[i]!];
  }
  return copy;
}

/** PUTs the chunks `indexes` of `source`, `parallel` at a time; every PUT must answer 204. */
export async function putChunks(client: ApiClient, uploadId: string, source: Buffer, chunkSize: number, indexes: number[], parallel = 4) {
  const queue = [...indexes];
  const worker = async () => {
    for (let index = queue.shift(); index !== undefined; index = queue.shift()) {
      const answer = await putChunk(client, uploadId, index, chunkOf(source, chunkSize, index));
      if (answer.status !== 204) throw new Error(`PUT chunk ${index}: ${answer.status} ${answer.text}`);
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
}

/** POST …/complete, repeated while the server answers 202 (verifying); returns the final answer. */
export async function complete(client: ApiClient, uploadId: string) {
  for (let attempt = 0; attempt < 600; attempt++) {
    const answer = await client.post(`/api/uploads/${uploadId}/complete`);
    if (answer.status !== 202) return answer;
    expectVerifying(answer.json);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`upload ${uploadId} still verifying after 60 s`);
}

/**
 * POST …/complete on `completer` and DELETE on `canceller` (the same or another API process), the DELETE
 * sent `offsetMs` after the complete (before it when negative); returns the DELETE's answer and the
 * complete's final answer (after any 202s).
 */
export async function completeRacingCancel(completer: ApiClient, canceller: ApiClient, uploadId: string, offsetMs: number) {
  const pause = () => new Promise((resolve) => setTimeout(resolve, Math.abs(offsetMs)));
  const post = () => completer.post(`/api/uploads/${uploadId}/complete`);
  const cancel = () => canceller.request('DELETE', `/api/uploads/${uploadId}`);
  const [first, cancelled] = await Promise.all(offsetMs < 0 ? [pause().then(post), cancel()] : [post(), pause().then(cancel)]);
  return { cancelled, completed: first.status === 202 ? await complete(completer, uploadId) : first };
}

function expectVerifying(json: unknown): void {
  if ((json as { state?: unknown })?.state !== 'verifying') throw new Error(`202 without state "verifying": ${JSON.stringify(json)}`);
}

/** Create → PUT every chunk (shuffled, 4 in flight) → complete; returns the create and complete answers. */
export async function uploadChunked(
  client: ApiClient,
  source: Buffer,
  options: { name: string; folder?: string; chunkSize?: number; sha1?: string | false },
) {
  const { sha1: declared, ...rest } = options;
  const body = { ...rest, size: source.length, ...(declared === false ? {} : { sha1: declared ?? sha1(source) }) };
  const created = await client.post('/api/uploads', body);
  if (created.status !== 201 || created.json.mode !== 'chunks') throw new Error(`create: ${created.status} ${created.text}`);
  const { uploadId, chunkSize, chunkCount } = created.json as { uploadId: string; chunkSize: number; chunkCount: number };
  await putChunks(client, uploadId, source, chunkSize, shuffled([...Array(chunkCount).keys()]));
  return { created, uploadId, completed: await complete(client, uploadId) };
}

export interface Challenge {
  nonce: string;
  ranges: Array<{ offset: number; length: number }>;
}

/** The answer to a proof-of-possession challenge: hex SHA-256(nonce bytes ‖ range 1 ‖ range 2 ‖ range 3). */
export function proofFor(challenge: Challenge, source: Buffer): string {
  const hash = createHash('sha256').update(Buffer.from(challenge.nonce, 'hex'));
  for (const { offset, length } of challenge.ranges) hash.update(source.subarray(offset, offset + length));
  return hash.digest('hex');
}

export const forgedProof = (): string => randomBytes(32).toString('hex');
