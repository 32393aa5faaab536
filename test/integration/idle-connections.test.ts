import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { availableProfiles, useApp, type RunningApp } from '../support/app.js';
import { newUser, sha1 } from '../support/files.js';
import { MiB, complete, putChunks } from '../support/uploads.js';

const profiles = await availableProfiles('idle connections');

/** Sends `head` and the first part of a body on a raw socket, then nothing; resolves with the ms until the server closed it. */
function stallAfter(app: RunningApp, head: string, partOfBody: Buffer): Promise<number> {
  const { port } = new URL(app.baseUrl);
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const socket = net.connect(Number(port), '127.0.0.1', () => {
      socket.write(head);
      socket.write(partOfBody);
    });
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(performance.now() - started));
    setTimeout(() => reject(new Error('the server kept a stalled request open for 10 s')), 10_000).unref();
  });
}

describe.each(profiles)('stalled request bodies (%s profile)', (profile) => {
  const app = useApp(profile, { IDLE_TIMEOUT_SECONDS: '1' });

  it('closes a chunk PUT whose body stalls for IDLE_TIMEOUT_SECONDS; the chunk stays missing and is simply sent again', async () => {
    const alice = await newUser(app);
    const bytes = randomBytes(2 * MiB);
    const id = (await alice.post('/api/uploads', { name: 'stalled.bin', size: bytes.length, sha1: sha1(bytes), chunkSize: MiB })).json.uploadId as string;
    const head = `PUT /api/uploads/${id}/chunks/0 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${alice.token}\r\nContent-Length: ${MiB}\r\n\r\n`;
    const closedAfter = await stallAfter(app, head, bytes.subarray(0, 300_000));
    expect(closedAfter).toBeGreaterThanOrEqual(900);
    expect((await alice.get(`/api/uploads/${id}`)).json.missing).toEqual([0, 1]);
    await putChunks(alice, id, bytes, MiB, [0, 1]);
    const done = await complete(alice, id);
    expect(done.status).toBe(201);
    expect((await alice.get(`/api/files/${done.json.id}/content`)).bytes.equals(bytes)).toBe(true);
  });

  it('closes a login whose body stalls, before any authentication', async () => {
    const head = 'POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 60000\r\n\r\n';
    expect(await stallAfter(app, head, Buffer.from('{"username":"a'))).toBeGreaterThanOrEqual(900);
  });
});
