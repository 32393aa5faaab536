import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import knexFactory, { type Knex } from 'knex';
import { afterEach, describe, expect, it } from 'vitest';
import { openSqlite } from '../../src/db/knex.js';
import { availableProfiles, type ProfileName } from '../support/app.js';
import { expectErrorBody, filesUnder, sha1 } from '../support/files.js';
import { startRelay } from '../support/relay.js';
import { crashableServer, profileEnv, type Cleanups } from '../support/server-process.js';
import { MiB, complete, putChunks, shuffled } from '../support/uploads.js';
import { waitFor } from '../support/workers.js';

const profiles = await availableProfiles('complete after kill -9');

const cleanups: Cleanups = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

const CHUNK = 4 * MiB;

type Server = Awaited<ReturnType<typeof crashableServer>>;

/** The test's own view of the server's database (SQLite file or MariaDB primary), never through a relay. */
function openDb(profile: ProfileName, dataDir: string, primaryUrl?: string): Knex {
  const db = profile === 'embedded' ? openSqlite(dataDir) : knexFactory({ client: 'mysql2', connection: primaryUrl!, pool: { min: 0, max: 1 } });
  cleanups.push(() => db.destroy());
  return db;
}

/** The `files` rows of `hash` and the available user files linked to them. */
async function rowsOf(db: Knex, hash: string) {
  const files = await db('files').where({ sha1: hash }).select('id');
  const links = await db('user_files').whereIn('file_id', files.map((row: { id: number }) => row.id)).where({ status: 'available' }).select('id');
  return { files: files.length, links: links.length };
}

const blobsOf = async (dataDir: string, hash: string) => (await filesUnder(path.join(dataDir, 'blobs'))).filter((file) => path.basename(file).startsWith(`${hash}.`));
const gone = (file: string) => fsp.access(file).then(() => false, () => true);

/** A session of `source` with every chunk received; returns its id and staged file. */
async function uploadAllChunks(server: Server, source: Buffer, name: string) {
  const created = await server.client.post('/api/uploads', { name, size: source.length, sha1: sha1(source), chunkSize: CHUNK });
  expect(created.status).toBe(201);
  const id = created.json.uploadId as string;
  await putChunks(server.client, id, source, CHUNK, shuffled([...Array(created.json.chunkCount as number).keys()]));
  return { id, staged: path.join(server.dataDir, 'uploads', `${id}.part`) };
}

/**
 * POST complete, then SIGKILL the server as soon as `reached` says the completion got that far; returns
 * whether the complete was answered 201 all the same (the kill came after the completion's end).
 */
async function killDuringComplete(server: Server, id: string, reached: () => Promise<boolean>): Promise<boolean> {
  const answer = server.client.post(`/api/uploads/${id}/complete`).catch(() => undefined);
  await waitFor('the completion to reach the kill point', async () => reached(), 30_000, 1);
  await server.kill();
  return (await answer)?.status === 201;
}

/**
 * POST complete, and SIGKILL the server from the inotify event of its staged file's rename into blobs/:
 * the next steps of the completion follow within a millisecond or two, so polling would come too late.
 */
async function killAsStagedFileMoves(server: Server, id: string, staged: string): Promise<boolean> {
  const watcher = fs.watch(path.dirname(staged));
  const moved = new Promise<void>((resolve) =>
    watcher.on('change', (_, name) => {
      if (name !== path.basename(staged) || fs.existsSync(staged)) return;
      process.kill(server.pid()!, 'SIGKILL');
      resolve();
    }),
  );
  cleanups.push(async () => watcher.close());
  const answer = server.client.post(`/api/uploads/${id}/complete`).catch(() => undefined);
  await moved;
  watcher.close();
  await server.kill();
  return (await answer)?.status === 201;
}

/**
 * After the restart: complete answers 201 (200 if the killed server had answered 201), then 200, with
 * the file of exactly `source`, stored once.
 */
async function expectLinkedOnce(server: Server, db: Knex, id: string, source: Buffer, answeredBefore = false) {
  const completed = await complete(server.client, id);
  expect({ status: completed.status, error: completed.json?.error }).toEqual({ status: answeredBefore ? 200 : 201, error: undefined });
  expect(completed.json).toMatchObject({ size: source.length, sha1: sha1(source) });
  const again = await complete(server.client, id);
  expect({ status: again.status, id: again.json.id }).toEqual({ status: 200, id: completed.json.id });
  expect((await server.client.get(`/api/uploads/${id}`)).json).toMatchObject({ state: 'complete', file: { id: completed.json.id } });
  const content = await server.client.get(`/api/files/${completed.json.id}/content`);
  expect(content.status).toBe(200);
  expect(content.bytes.equals(source)).toBe(true);
  expect(await rowsOf(db, sha1(source))).toEqual({ files: 1, links: 1 });
  expect(await blobsOf(server.dataDir, sha1(source))).toHaveLength(1);
  expect(await filesUnder(path.join(server.dataDir, 'uploads'))).toEqual([]);
}

describe.each(profiles)('a chunked upload whose server is killed during complete (%s profile)', (profile: ProfileName) => {
  it('links exactly the uploaded bytes on the next complete after a restart, when kill -9 came as the staged file moved into blobs/', { timeout: 120_000 }, async () => {
    const { env, primaryUrl } = await profileEnv(profile, cleanups);
    const server = await crashableServer(env, cleanups);
    const db = openDb(profile, server.dataDir, primaryUrl);
    const source = randomBytes(6 * CHUNK + 12_345);
    const { id, staged } = await uploadAllChunks(server, source, 'moved.bin');

    const answered = await killAsStagedFileMoves(server, id, staged);
    await server.killAndRestart();
    await expectLinkedOnce(server, db, id, source, answered);
  });
});

// MariaDB is reached through a relay that delays every byte, so the completion's statements are far
// apart and the kill lands between two chosen ones, every time.
describe.skipIf(!profiles.includes('cluster'))('a chunked upload whose server is killed between two steps of complete (cluster profile)', () => {
  async function slowDbServer() {
    const { env, primaryUrl } = await profileEnv('cluster', cleanups);
    const relay = await startRelay(primaryUrl!);
    cleanups.push(() => relay.close());
    const server = await crashableServer({ ...env, DB_PRIMARY_URL: relay.url }, cleanups);
    return { server, relay, db: openDb('cluster', server.dataDir, primaryUrl) };
  }

  it('links exactly the uploaded bytes after a kill -9 once the bytes are in blobs/, once their files row is written, or once the file is linked', { timeout: 240_000 }, async () => {
    const { server, relay, db } = await slowDbServer();
    const killPoints: Array<[string, (staged: string, hash: string) => Promise<boolean>]> = [
      ['bytes in blobs/, no files row', (staged) => gone(staged)],
      ['files row written, not linked', async (_, hash) => (await rowsOf(db, hash)).files === 1],
      ['linked, session not complete', async (_, hash) => (await rowsOf(db, hash)).links === 1],
    ];
    for (const [i, [point, reached]] of killPoints.entries()) {
      const source = randomBytes(5 * CHUNK + 777);
      const { id, staged } = await uploadAllChunks(server, source, `killed-${i}.bin`);
      relay.delay(150);
      const answered = await killDuringComplete(server, id, () => reached(staged, sha1(source)));
      relay.restore();
      expect({ point, stagedGone: await gone(staged), answered }).toEqual({ point, stagedGone: true, answered: false });
      await server.killAndRestart();
      await expectLinkedOnce(server, db, id, source);
    }
  });

  it('answers 410 upload_lost when the moved bytes are gone after a kill -9, and a new upload of the same file completes', { timeout: 120_000 }, async () => {
    const { server, relay, db } = await slowDbServer();
    const source = randomBytes(5 * CHUNK + 999);
    const hash = sha1(source);
    const { id, staged } = await uploadAllChunks(server, source, 'lost.bin');
    relay.delay(150);
    await killDuringComplete(server, id, () => gone(staged));
    relay.restore();
    const orphans = await blobsOf(server.dataDir, hash);
    expect(orphans).toHaveLength(1);
    expect(await rowsOf(db, hash)).toEqual({ files: 0, links: 0 });
    await fsp.rm(path.join(server.dataDir, 'blobs', orphans[0]!));
    await server.killAndRestart();

    const lost = await complete(server.client, id);
    expect({ status: lost.status, code: expectErrorBody(lost.json).code }).toEqual({ status: 410, code: 'upload_lost' });
    expect((await server.client.post(`/api/uploads/${id}/complete`)).status).toBe(410);
    expect((await server.client.get(`/api/uploads/${id}`)).json).toMatchObject({ state: 'failed' });

    const { id: again } = await uploadAllChunks(server, source, 'lost.bin');
    expect(again).not.toBe(id);
    await expectLinkedOnce(server, db, again, source);
  });
});
