import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { availableProfiles, useApp } from '../support/app.js';
import { ApiClient } from '../support/client.js';
import { newUser } from '../support/files.js';

const profiles = await availableProfiles('health and metrics');

/** The value of one sample line of a Prometheus text exposition, or undefined when absent. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const found = Object.fromEntries([...(match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([key, value]) => found[key] === value)) return Number(match[3]);
  }
  return undefined;
}

describe.each(profiles)('health and metrics (%s profile)', (profile) => {
  const app = useApp(profile);

  it('GET /healthz answers 200 {status: "ok", checks} with every dependency of the profile ok, without a token', async () => {
    const res = await new ApiClient(app.baseUrl).get('/healthz');
    expect(res.status).toBe(200);
    const expected = profile === 'cluster' ? { db: 'ok', disk: 'ok', redis: 'ok', s3: 'ok' } : { db: 'ok', disk: 'ok' };
    expect(res.json).toEqual({ status: 'ok', checks: expected });
  });

  it('GET /metrics counts uploaded bytes in filestore_uploaded_bytes_total', async () => {
    const anonymous = new ApiClient(app.baseUrl);
    const before = sample((await anonymous.get('/metrics')).text, 'filestore_uploaded_bytes_total');
    expect(before).toBeTypeOf('number');

    const alice = await newUser(app);
    expect((await alice.upload('/api/files', { name: 'm1.bin', bytes: randomBytes(12_345) })).status).toBe(201);
    expect((await alice.upload('/api/files', { name: 'm2.bin', bytes: Buffer.alloc(0) })).status).toBe(201);

    const res = await anonymous.get('/metrics');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(res.text).toContain('# TYPE filestore_uploaded_bytes_total counter');
    expect(sample(res.text, 'filestore_uploaded_bytes_total')).toBe(before! + 12_345);
  });

  it('GET /metrics has HTTP request durations labelled by method, route pattern and status', async () => {
    const alice = await newUser(app);
    const { json: file } = await alice.upload('/api/files', { name: 'd.bin', bytes: randomBytes(10) });
    await alice.get(`/api/files/${file.id}`);
    await alice.get(`/api/files/${file.id}/content`);

    // a request is timed when its response finishes, which the client may see a moment before the server does
    const scrape = async () => (await new ApiClient(app.baseUrl).get('/metrics')).text;
    const count = (text: string, labels: Record<string, string>) => sample(text, 'filestore_http_request_duration_seconds_count', labels) ?? 0;
    await expect.poll(async () => count(await scrape(), { method: 'GET', route: '/api/files/:id/content', status: '200' })).toBeGreaterThanOrEqual(1);
    const text = await scrape();
    expect(text).toContain('# TYPE filestore_http_request_duration_seconds histogram');
    expect(count(text, { method: 'POST', route: '/api/files', status: '201' })).toBeGreaterThanOrEqual(1);
    expect(count(text, { method: 'GET', route: '/api/files/:id', status: '200' })).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'filestore_http_request_duration_seconds_bucket', { method: 'POST', route: '/api/files', status: '201', le: '+Inf' })).toBeGreaterThanOrEqual(1);
    // route labels are patterns, never raw URLs with ids in them
    expect(text).not.toContain(file.id);
  });

  it('GET /metrics labels a request that ended in an error with the same full route pattern as a successful one', async () => {
    const alice = await newUser(app);
    expect((await alice.get('/api/files/00000000-0000-4000-8000-000000000000')).status).toBe(404);
    expect((await new ApiClient(app.baseUrl).post('/api/auth/login', { username: 'nobody-here', password: 'wrong-password' })).status).toBe(401);

    const scrape = async () => (await new ApiClient(app.baseUrl).get('/metrics')).text;
    const count = (text: string, labels: Record<string, string>) => sample(text, 'filestore_http_request_duration_seconds_count', labels) ?? 0;
    // an error leaves its router before the response finishes: the label was '/files/:id', '/login'
    await expect.poll(async () => count(await scrape(), { method: 'POST', route: '/api/auth/login', status: '401' })).toBeGreaterThanOrEqual(1);
    const text = await scrape();
    expect(count(text, { method: 'GET', route: '/api/files/:id', status: '404' })).toBeGreaterThanOrEqual(1);
    expect(text).not.toMatch(/route="\/(files|login)/);
  });
});
