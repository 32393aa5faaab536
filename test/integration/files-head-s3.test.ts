import { randomBytes } from 'node:crypto';
import diagnostics from 'node:diagnostics_channel';
import http from 'node:http';
import type { Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildProcessors } from '../../workers/processors/index.js';
import { startApp, type RunningApp } from '../support/app.js';
import { newUser, sha1 } from '../support/files.js';
import { startRelay, type Relay } from '../support/relay.js';
import { removeObjects } from '../support/rgw.js';
import { servicesAvailable } from '../support/services.js';
import { MiB } from '../support/uploads.js';
import { contentOf } from '../support/workers.js';

/**
 * A HEAD of content in S3 must not fetch the object: a GetObject aborted once its headers arrive costs
 * the gateway a request, may start sending bytes for nothing, and closes a pooled keep-alive connection.
 */
const cluster = await servicesAvailable('HEAD of content in S3 (cluster profile)', ['mariadb-pair', 'redis', 'ceph-rgw']);

type User = Awaited<ReturnType<typeof newUser>>;

/** The headers a download answers with; a HEAD must give those of the same GET. */
const CONTENT_HEADERS = ['content-type', 'content-length', 'content-range', 'etag', 'last-modified', 'accept-ranges', 'content-disposition', 'cache-control'];

/**
 * The requests this process sends to the gateway for the objects under `prefix` (their methods) and the
 * connections they go over, seen on node:http's diagnostics channel: the app serves from this process.
 */
function watchGateway(app: RunningApp, prefix: string) {
  const gateway = new URL(app.services.config.S3_ENDPOINT!).host;
  const objects = `/${app.services.config.S3_BUCKET}/${prefix}`;
  const requests: string[] = [];
  const connections = new Set<Socket>();
  const record = (message: unknown) => {
    const { request } = message as { request: http.ClientRequest };
    if (request.getHeader('host') !== gateway || !request.path.startsWith(objects)) return;
    requests.push(request.method);
    if (request.socket) connections.add(request.socket);
  };
  // published once the gateway's answer begins: by then the request has its socket, new or pooled
  diagnostics.subscribe('http.client.response.finish', record);
  return {
    requests,
    connections: () => connections.size,
    stop: () => diagnostics.unsubscribe('http.client.response.finish', record),
  };
}

/** A request through node:http with exactly these headers (fetch would add its own). */
function send(method: string, url: string, headers: Record<string, string>) {
  return new Promise<{ status: number; headers: http.IncomingHttpHeaders; bytes: Buffer }>((resolve, reject) => {
    const req = http.request(url, { method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, bytes: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject).end();
  });
}

describe.runIf(cluster)('HEAD of a file whose content is in S3 (cluster profile)', () => {
  let app: RunningApp;
  /** Between the app and the gateway, so one test can take the gateway away from this app alone. */
  let relay: Relay;
  const hashes: string[] = [];
  beforeAll(async () => {
    app = await startApp('cluster', {}, {
      throughRelays: async (env) => {
        relay = await startRelay(env.S3_ENDPOINT!);
        return { S3_ENDPOINT: relay.url.replace(/\/$/, '') };
      },
    });
  });
  afterAll(async () => {
    relay?.restore();
    await app?.close();
    await relay?.close();
    for (const hash of hashes) await removeObjects(`blobs/${hash}/`).catch(() => undefined);
  });

  /** Uploads `bytes` and moves them to S3 as the transfer job does. */
  async function inS3(user: User, name: string, bytes: Buffer): Promise<string> {
    hashes.push(sha1(bytes));
    const answer = await user.upload('/api/files', { name, bytes });
    if (answer.status !== 201) throw new Error(`upload ${name}: ${answer.status} ${answer.text}`);
    const id = answer.json.id as string;
    await buildProcessors(app.services).transfer({ fileId: (await contentOf(app, id)).id });
    expect(await contentOf(app, id)).toMatchObject({ tier: 's3', status: 'available' });
    return id;
  }

  it('answers HEAD (whole, Range, conditional) with the status and headers of the same GET and no body, and asks the gateway for no object bytes', async () => {
    const alice = await newUser(app);
    const bytes = randomBytes(MiB + 17);
    const id = await inS3(alice, 'report.pdf', bytes);
    const url = `${app.baseUrl}/api/files/${id}/content`;
    const auth = { authorization: `Bearer ${alice.token}` };
    // a 416 or 304 is answered from the row alone; the others ask the gateway whether the object is there
    const cases: Record<string, { headers: Record<string, string>; asks: string[] }> = {
      whole: { headers: {}, asks: ['HEAD'] },
      range: { headers: { range: 'bytes=100-1123' }, asks: ['HEAD'] },
      suffix: { headers: { range: 'bytes=-500' }, asks: ['HEAD'] },
      unsatisfiable: { headers: { range: `bytes=${bytes.length}-` }, asks: [] },
      etagMatch: { headers: { 'if-none-match': `"${sha1(bytes)}"` }, asks: [] },
      etagOther: { headers: { 'if-none-match': `"${'0'.repeat(40)}"` }, asks: ['HEAD'] },
    };
    const pick = (headers: http.IncomingHttpHeaders) => Object.fromEntries(CONTENT_HEADERS.map((key) => [key, headers[key]]));
    for (const [name, { headers, asks }] of Object.entries(cases)) {
      const get = await send('GET', url, { ...auth, ...headers });
      const gateway = watchGateway(app, `blobs/${sha1(bytes)}/`);
      const head = await send('HEAD', url, { ...auth, ...headers }).finally(gateway.stop);
      expect({ name, status: head.status, headers: pick(head.headers) }).toEqual({ name, status: get.status, headers: pick(get.headers) });
      expect({ name, body: head.bytes.length }).toEqual({ name, body: 0 });
      expect({ name, sent: gateway.requests }).toEqual({ name, sent: asks });
    }
    const whole = await send('HEAD', url, auth);
    expect(whole).toMatchObject({ status: 200, headers: { 'content-length': String(bytes.length), etag: `"${sha1(bytes)}"`, 'accept-ranges': 'bytes', 'content-type': 'application/pdf' } });
  });

  it('answers HEAD of a file whose S3 object went missing as its GET does: 503', async () => {
    const alice = await newUser(app);
    const bytes = randomBytes(4096);
    const id = await inS3(alice, 'lost.bin', bytes);
    await removeObjects(`blobs/${sha1(bytes)}/`);
    const url = `${app.baseUrl}/api/files/${id}/content`;
    const auth = { authorization: `Bearer ${alice.token}` };
    const get = await send('GET', url, auth);
    expect(get.status).toBe(503);
    expect(JSON.parse(get.bytes.toString()).error.code).toBe('unavailable');
    const head = await send('HEAD', url, auth);
    // the same error: 503 unavailable without Retry-After (an outage of the gateway would carry one)
    expect({ status: head.status, type: head.headers['content-type'], retryAfter: head.headers['retry-after'] })
      .toEqual({ status: 503, type: get.headers['content-type'], retryAfter: undefined });
    expect(get.headers['retry-after']).toBeUndefined();
  });

  it('answers 60 HEADs in a row (more than the S3 client\'s 50 sockets) over pooled connections to the gateway, then a GET promptly with the right bytes', { timeout: 60_000 }, async () => {
    const alice = await newUser(app);
    const bytes = randomBytes(4 * MiB + 1);
    const id = await inS3(alice, 'often.bin', bytes);
    const url = `${app.baseUrl}/api/files/${id}/content`;
    const auth = { authorization: `Bearer ${alice.token}` };
    const gateway = watchGateway(app, `blobs/${sha1(bytes)}/`);
    try {
      for (let i = 0; i < 60; i++) {
        const head = await send('HEAD', url, auth);
        expect({ i, status: head.status, length: head.headers['content-length'] }).toEqual({ i, status: 200, length: String(bytes.length) });
      }
      expect(gateway.requests).toEqual(Array(60).fill('HEAD'));
      // one connection carries them all, one after the other; a few spare for sockets the gateway retires
      expect(gateway.connections()).toBeLessThanOrEqual(3);
    } finally {
      gateway.stop();
    }
    const after = await fetch(url, { headers: auth, signal: AbortSignal.timeout(15_000) });
    expect(after.status).toBe(200);
    expect(Buffer.from(await after.arrayBuffer()).equals(bytes)).toBe(true);
  });

  for (const outage of ['cut', 'freeze'] as const) {
    it(`answers HEAD 503 with Retry-After in under 10 s while the gateway is unreachable (${outage}), and 200 once it is back`, { timeout: 60_000 }, async () => {
      const alice = await newUser(app);
      const bytes = randomBytes(4096);
      const id = await inS3(alice, `${outage}.bin`, bytes);
      const url = `${app.baseUrl}/api/files/${id}/content`;
      const auth = { authorization: `Bearer ${alice.token}` };
      try {
        relay[outage]();
        const started = Date.now();
        const head = await send('HEAD', url, auth);
        expect(head.status).toBe(503);
        expect(Number(head.headers['retry-after'])).toBeGreaterThan(0);
        // the content headers set before the gateway failed are not sent with the error
        expect(head.headers.etag).not.toBe(`"${sha1(bytes)}"`);
        expect(head.headers['content-disposition']).toBeUndefined();
        expect(Date.now() - started).toBeLessThan(10_000);
      } finally {
        relay.restore();
      }
      expect((await send('HEAD', url, auth)).status).toBe(200);
    });
  }
});
