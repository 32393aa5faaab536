import { randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ApiClient } from '../support/client.js';
import { useApp } from '../support/app.js';
import { expectErrorBody, newUser, sha1 } from '../support/files.js';
import { KiB, complete, putChunk } from '../support/uploads.js';

// A full disk under DATA_DIR in the embedded profile, where the SQLite database lives too: its writes
// fail with SQLITE_FULL. Simulated without a mount by capping the database's pages (max_page_count; the
// pool has one connection), which makes SQLite answer SQLITE_FULL exactly as a full disk does.
describe('a full disk under the embedded database', () => {
  const app = useApp('embedded');
  const capDatabase = async () => {
    const [{ page_count }] = await app.services.db.primary.raw('pragma page_count');
    await app.services.db.primary.raw(`pragma max_page_count = ${page_count}`);
  };
  const uncapDatabase = () => app.services.db.primary.raw('pragma max_page_count = 1073741823');

  /** Repeats `attempt` (each a new row) until it is refused; returns the refusal. */
  async function firstRefusal(attempt: (n: number) => Promise<{ status: number; json: any }>, success: number) {
    for (let n = 0; n < 500; n++) {
      const answer = await attempt(n);
      if (answer.status !== success) return answer;
    }
    throw new Error('never refused: the database cap did not bite');
  }

  it('answers 507 insufficient_storage to registration and upload creation, keeps received chunks, and recovers once space is back', async () => {
    const alice = await newUser(app);
    const source = randomBytes(256 * KiB);
    const id = (await alice.post('/api/uploads', { name: 'kept.bin', size: source.length, sha1: sha1(source), chunkSize: 256 * KiB })).json.uploadId as string;
    expect((await putChunk(alice, id, 0, source)).status).toBe(204);
    await capDatabase();
    try {
      const stranger = new ApiClient(app.baseUrl);
      const register = await firstRefusal((n) => stranger.post('/api/auth/register', { username: `full${n}x${Date.now()}`, password: 'correct horse' }), 201);
      expect(register.status).toBe(507);
      expect(expectErrorBody(register.json).code).toBe('insufficient_storage');
      const create = await firstRefusal((n) => alice.post('/api/uploads', { name: `refused${n}.bin`, size: 1000 }), 201);
      expect(create.status).toBe(507);
      expect(expectErrorBody(create.json).code).toBe('insufficient_storage');
      // what was received before stays received
      expect((await alice.get(`/api/uploads/${id}`)).json).toMatchObject({ state: 'receiving', missing: [] });
    } finally {
      await uncapDatabase();
    }
    // without a restart: new accounts and uploads work, and the earlier upload completes with its bytes
    await newUser(app);
    const completed = await complete(alice, id);
    expect(completed.status).toBe(201);
    expect((await alice.get(`/api/files/${completed.json.id}/content`)).bytes.equals(source)).toBe(true);
  });

  it('leaves no staged file behind for an upload whose creation the full database refused', async () => {
    const alice = await newUser(app);
    const before = new Set(await fsp.readdir(path.join(app.dataDir, 'uploads')).catch(() => []));
    const created: string[] = [];
    await capDatabase();
    try {
      const refused = await firstRefusal(async (n) => {
        const answer = await alice.post('/api/uploads', { name: `orphan${n}.bin`, size: 1000 });
        if (answer.status === 201) created.push(`${answer.json.uploadId}.part`);
        return answer;
      }, 201);
      expect(refused.status).toBe(507);
    } finally {
      await uncapDatabase();
    }
    // nothing sweeps a staged file without a session: one left here would stay forever
    const after = (await fsp.readdir(path.join(app.dataDir, 'uploads'))).filter((name) => !before.has(name));
    expect(after.sort()).toEqual(created.sort());
  });
});
