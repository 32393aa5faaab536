import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type RunningApp } from '../support/app.js';
import type { ApiClient } from '../support/client.js';
import { expectErrorBody, newUser } from '../support/files.js';
import { startRelay, type Relay } from '../support/relay.js';
import { servicesAvailable } from '../support/services.js';
import { MiB, complete, putChunk } from '../support/uploads.js';

const cluster = await servicesAvailable('service outages (cluster profile)', ['mariadb-pair', 'redis', 'ceph-rgw']);

/** The longest an upload request may take to say the service is unavailable (defaults: 5 s DB, 2 s Redis). */
const ANSWER_WITHIN_MS = 8000;

type Answer = Awaited<ReturnType<ApiClient['request']>>;

/** The answer and how long it took. */
async function timed(call: () => Promise<Answer>): Promise<Answer & { ms: number }> {
  const started = Date.now();
  const answer = await call();
  return { ...answer, ms: Date.now() - started };
}

/** Repeats `call` while it answers 503 (the service is still coming back), as a client honouring Retry-After would. */
async function once503sStop(call: () => Promise<Answer>): Promise<Answer> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const answer = await call();
    if (answer.status !== 503 || Date.now() > deadline) return answer;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

const TUS = { 'tus-resumable': '1.0.0' };

/**
 * A tus upload of `bytes` that lacks its last byte. `finish()` sends what the upload still lacks from
 * the offset HEAD shows, as a client resuming does: a PATCH refused by an outage may have written its byte.
 */
async function tusUploadAllButLastByte(user: ApiClient, bytes: Buffer) {
  const created = await user.request('POST', '/api/tus', {
    headers: { ...TUS, 'upload-length': String(bytes.length), 'upload-metadata': `filename ${Buffer.from(`tus-${randomBytes(4).toString('hex')}`).toString('base64')}` },
  });
  expect(created.status).toBe(201);
  const path = new URL(created.headers.get('location')!, user.baseUrl).pathname;
  const patch = (offset: number) => user.request('PATCH', path, {
    headers: { ...TUS, 'upload-offset': String(offset), 'content-type': 'application/offset+octet-stream' },
    body: new Uint8Array(bytes.subarray(offset, offset === 0 ? bytes.length - 1 : bytes.length)),
  });
  expect((await patch(0)).status).toBe(204);
  return {
    sendLastByte: () => patch(bytes.length - 1),
    async finish(): Promise<Answer> {
      const head = await user.request('HEAD', path, { headers: TUS });
      if (head.status !== 200) return head;
      return patch(Number(head.headers.get('upload-offset')));
    },
  };
}

/**
 * MariaDB's primary or Redis gone (connections reset) or hung (connections open, nothing answered),
 * through a relay in front of the real service: the upload endpoints answer 503 unavailable promptly,
 * and the uploads begun before the outage (chunked and tus) complete with their exact bytes once the
 * service is back.
 */
describe.runIf(cluster)('service outages (cluster profile)', () => {
  let app: RunningApp;
  const relays: Record<'redis' | 'primary', Relay> = {} as Record<'redis' | 'primary', Relay>;
  beforeAll(async () => {
    app = await startApp('cluster', {}, {
      throughRelays: async (env) => {
        relays.redis = await startRelay(env.REDIS_URL!);
        relays.primary = await startRelay(env.DB_PRIMARY_URL!);
        return { REDIS_URL: relays.redis.url, DB_PRIMARY_URL: relays.primary.url };
      },
    });
  });
  afterAll(async () => {
    for (const relay of Object.values(relays)) relay.restore();
    await app?.close();
    for (const relay of Object.values(relays)) await relay.close();
  });

  const cases = [
    { service: 'redis', outage: 'cut', check: 'redis' },
    { service: 'redis', outage: 'freeze', check: 'redis' },
    { service: 'primary', outage: 'cut', check: 'db' },
    { service: 'primary', outage: 'freeze', check: 'db' },
  ] as const;

  it.each(cases)('$service $outage: 503 unavailable with Retry-After, then the upload completes', { timeout: 45_000 }, async ({ service, outage, check }) => {
    const alice = await newUser(app);
    const bytes = randomBytes(2 * MiB);
    const created = await alice.post('/api/uploads', { name: `${service}-${outage}.bin`, size: bytes.length, chunkSize: MiB });
    expect(created.status).toBe(201);
    const id = created.json.uploadId as string;
    expect((await putChunk(alice, id, 0, bytes.subarray(0, MiB))).status).toBe(204);
    const tus = await tusUploadAllButLastByte(alice, bytes);

    relays[service][outage]();
    try {
      const answers = await Promise.all([
        timed(() => alice.post('/api/uploads', { name: 'other.bin', size: 10 })),
        timed(() => putChunk(alice, id, 1, bytes.subarray(MiB))),
        timed(() => alice.get(`/api/uploads/${id}`)),
        timed(() => alice.post(`/api/uploads/${id}/complete`)),
        timed(() => tus.sendLastByte()),
      ]);
      for (const answer of answers) {
        expect(answer.status, answer.text).toBe(503);
        expect(answer.headers.get('content-type')).toMatch(/^application\/json/);
        expect(expectErrorBody(answer.json).code).toBe('unavailable');
        expect(Number(answer.headers.get('retry-after'))).toBeGreaterThan(0);
        expect(answer.ms).toBeLessThan(ANSWER_WITHIN_MS);
      }
      const health = await alice.get('/healthz');
      expect(health.status).toBe(503);
      expect(health.json.checks[check]).toMatch(/^failing/);
    } finally {
      relays[service].restore();
    }

    expect((await once503sStop(() => putChunk(alice, id, 1, bytes.subarray(MiB)))).status).toBe(204);
    const described = await alice.get(`/api/uploads/${id}`);
    expect(described.json).toMatchObject({ state: 'receiving', received: 2, missing: [] });
    const completed = await once503sStop(() => complete(alice, id));
    expect(completed.status, completed.text).toBe(201);
    const content = await alice.get(`/api/files/${completed.json.id}/content`);
    expect(content.status).toBe(200);
    expect(content.bytes.equals(bytes)).toBe(true);
    expect((await once503sStop(() => alice.get('/healthz'))).status).toBe(200);

    const finished = await once503sStop(() => tus.finish());
    expect(finished.status, finished.text).toBe(204);
    const tusFile = finished.headers.get('filestore-file-id');
    expect((await alice.get(`/api/files/${tusFile}/content`)).bytes.equals(bytes)).toBe(true);
  });
});
