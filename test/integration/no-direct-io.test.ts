import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type RunningApp } from '../support/app.js';
import { newUser, sha1, uploadRaw } from '../support/files.js';
import { MiB, uploadChunked } from '../support/uploads.js';

/**
 * A ramfs refuses O_DIRECT (EINVAL), as some filesystems do: mounting one needs root. Where that is
 * impossible the suite skips with one line, except under REQUIRE_SERVICES=1 (CI runs as root).
 */
async function mountRamfs(): Promise<string | null> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'filestore-ramfs-'));
  try {
    execFileSync('mount', ['-t', 'ramfs', 'ramfs', dir], { stdio: 'pipe' });
    return dir;
  } catch (error) {
    await fsp.rmdir(dir);
    const line = `uploads without O_DIRECT: skipped, cannot mount a ramfs (${(error as Error).message.split('\n')[0]}); run as root`;
    if (process.env.REQUIRE_SERVICES === '1') throw new Error(`${line} (REQUIRE_SERVICES=1, so this fails)`);
    process.stderr.write(line + '\n');
    return null;
  }
}

const mountDir = await mountRamfs();

describe.skipIf(!mountDir)('uploads on a filesystem that refuses O_DIRECT (embedded profile, DATA_DIR on a ramfs)', () => {
  let app: RunningApp;
  beforeAll(async () => {
    app = await startApp('embedded', { DATA_DIR: path.join(mountDir!, 'data') });
  });
  afterAll(async () => {
    await app?.close();
    execFileSync('umount', [mountDir!]);
    await fsp.rmdir(mountDir!);
  });

  const listed = async (user: Awaited<ReturnType<typeof newUser>>, folder: string) =>
    ((await user.get(`/api/files?folder=${encodeURIComponent(folder)}`)).json?.files ?? []) as Array<{ id: string; name: string; sha1: string }>;
  const content = async (user: Awaited<ReturnType<typeof newUser>>, id: string) => (await user.get(`/api/files/${id}/content`)).bytes!;

  it('the ramfs really refuses O_DIRECT (else these tests would prove nothing)', () => {
    const probe = path.join(mountDir!, 'probe');
    expect(() => fs.openSync(probe, fs.constants.O_CREAT | fs.constants.O_RDWR | fs.constants.O_DIRECT)).toThrow(/EINVAL/);
  });

  it('completes a chunked upload sent in shuffled order, with the right bytes and SHA-1', async () => {
    const alice = await newUser(app);
    const bytes = randomBytes(3 * MiB + 12_345);
    const { completed } = await uploadChunked(alice, bytes, { name: 'chunked.bin', folder: '/ramfs', chunkSize: MiB });
    expect(completed.status).toBe(201);
    expect(completed.json.sha1).toBe(sha1(bytes));
    expect((await content(alice, completed.json.id)).equals(bytes)).toBe(true);
  });

  it('stores a multipart upload with the right bytes and SHA-1', async () => {
    const alice = await newUser(app);
    const bytes = randomBytes(2 * MiB + 777);
    const answer = await uploadRaw(alice, 'filename="form.bin"', bytes, { folder: '/ramfs' });
    expect(answer.status).toBe(201);
    expect(answer.json.sha1).toBe(sha1(bytes));
    expect((await content(alice, answer.json.id)).equals(bytes)).toBe(true);
  });

  it('finishes a tus upload sent in two PATCHes, the second from an offset that is not a whole block', async () => {
    const alice = await newUser(app);
    const bytes = randomBytes(2 * MiB + 99);
    const tus = (method: string, url: string, headers: Record<string, string>, body?: Buffer) =>
      fetch(url, { method, headers: { 'tus-resumable': '1.0.0', authorization: `Bearer ${alice.token}`, ...headers }, body: body && new Uint8Array(body) });
    const metadata = `filename ${Buffer.from('tus.bin').toString('base64')},folder ${Buffer.from('/ramfs').toString('base64')}`;
    const created = await tus('POST', `${app.baseUrl}/api/tus`, { 'upload-length': String(bytes.length), 'upload-metadata': metadata });
    expect(created.status).toBe(201);
    const url = new URL(created.headers.get('location')!, app.baseUrl).toString();
    const cut = MiB + 4097;
    const patch = (from: number, to: number) =>
      tus('PATCH', url, { 'upload-offset': String(from), 'content-type': 'application/offset+octet-stream' }, bytes.subarray(from, to));

    expect((await patch(0, cut)).status).toBe(204);
    expect((await patch(cut, bytes.length)).status).toBe(204);
    const [file] = await listed(alice, '/ramfs');
    expect(file).toEqual(expect.objectContaining({ name: 'tus.bin', sha1: sha1(bytes) }));
    expect((await content(alice, file!.id)).equals(bytes)).toBe(true);
  });
});
