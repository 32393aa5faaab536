import { randomBytes } from 'node:crypto';
import type { Locker } from '@tus/utils';
import { describe, expect, it } from 'vitest';
import { availableProfiles, useApp } from '../support/app.js';
import { expectErrorBody, newUser } from '../support/files.js';
import { tusRequest } from '../support/tus.js';

const profiles = await availableProfiles('tus lock timeout');

describe.each(profiles)('tus lock timeout (%s profile)', (profile) => {
  const app = useApp(profile, { TUS_LOCK_TIMEOUT_SECONDS: '1' });

  it('answers 423 upload_locked to a PATCH that waited TUS_LOCK_TIMEOUT_SECONDS for a holder that did not let go, and takes it once let go', async () => {
    const alice = await newUser(app);
    const bytes = randomBytes(1000);
    const tus = (method: string, url: string, headers: Record<string, string> = {}, body?: Buffer) => tusRequest(alice, method, url, headers, body);
    const created = await tus('POST', `${app.baseUrl}/api/tus`, { 'upload-length': String(bytes.length), 'upload-metadata': `filename ${Buffer.from('locked.bin').toString('base64')}` });
    expect(created.status).toBe(201);
    const url = new URL(created.headers.get('location')!, app.baseUrl).toString();
    const patch = () => tus('PATCH', url, { 'upload-offset': '0', 'content-type': 'application/offset+octet-stream' }, bytes);

    // a request that holds the upload and does not let go when asked (stuck in a write, say)
    const holder = (app.services.tus.server.options.locker as Locker).newLock(new URL(url).pathname.split('/').pop()!);
    await holder.lock(new AbortController().signal, () => {});
    const started = performance.now();
    const locked = await patch();
    expect(locked.status).toBe(423);
    expect(expectErrorBody(await locked.json())).toMatchObject({ code: 'upload_locked' });
    expect(performance.now() - started).toBeGreaterThanOrEqual(900);

    await holder.unlock();
    // the refused PATCH wrote nothing
    expect((await tus('HEAD', url)).headers.get('upload-offset')).toBe('0');
    const taken = await patch();
    expect(taken.status).toBe(204);
    expect(taken.headers.get('upload-offset')).toBe(String(bytes.length));
  });
});
