import { randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import { afterAll, describe, expect, it } from 'vitest';
import type { S3BlobStore } from '../../src/storage/blob-store.s3.js';
import { buildProcessors } from '../../workers/processors/index.js';
import { useApp, type RunningApp } from '../support/app.js';
import { newUser, sha1 } from '../support/files.js';
import { objectKeys, removeObjects } from '../support/rgw.js';
import { servicesAvailable } from '../support/services.js';
import { MiB } from '../support/uploads.js';
import { contentOf, downloadSha1, sleep } from '../support/workers.js';

/**
 * A `files` row revived after it was marked corrupt or while gc was collecting it lands again and is
 * moved to S3 again. Work begun for its previous incarnation (a collection, a transfer) may finish
 * after that: it must not touch the live object. The interleavings are forced by holding one S3 call
 * of the late party at a gate, as a slow gateway or a paused worker would.
 */
const cluster = await servicesAvailable('revived content in S3 (cluster profile)', ['mariadb-pair', 'redis', 'ceph-rgw']);

type User = Awaited<ReturnType<typeof newUser>>;

/**
 * The app's S3 tier with `remove` held before its request is sent, or `store` held once its copy is done
 * (before the caller acts on it), until release(). `reached` resolves with the key of the first such call.
 */
function held(s3: S3BlobStore, method: 'remove' | 'store') {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  let reach!: (key: string) => void;
  const reached = new Promise<string>((resolve) => (reach = resolve));
  const store: S3BlobStore = Object.create(s3);
  if (method === 'remove') {
    store.remove = async (location) => (reach(location), await gate, s3.remove(location));
  } else {
    store.store = async (...args) => {
      const key = await s3.store(...args);
      reach(key);
      await gate;
      return key;
    };
  }
  return { store, reached, release };
}

/** The processors a worker would run, with this S3 tier in place of the app's. */
const processorsWith = (app: RunningApp, s3: S3BlobStore) => buildProcessors({ ...app.services, s3 });

describe.runIf(cluster)('content revived while work for its previous incarnation is still under way (cluster profile)', () => {
  const app = useApp('cluster', { GC_GRACE_SECONDS: '1' });
  const hashes: string[] = [];
  afterAll(async () => {
    for (const hash of hashes) await removeObjects(`blobs/${hash}/`).catch(() => undefined);
  });

  async function upload(user: User, bytes: Buffer): Promise<string> {
    const answer = await user.upload('/api/files', { name: 'same.bin', bytes });
    if (answer.status !== 201) throw new Error(`upload: ${answer.status} ${answer.text}`);
    return answer.json.id as string;
  }

  /** The live row is in S3, the file downloads exactly, and its object is the only one of the content. */
  async function expectServedFromS3(user: User, id: string, bytes: Buffer, fileId: number) {
    const row = await contentOf(app, id);
    expect(row).toMatchObject({ id: fileId, tier: 's3', status: 'available' });
    expect(await downloadSha1(user, id)).toEqual({ status: 200, sha1: sha1(bytes), size: bytes.length });
    expect(await objectKeys(`blobs/${sha1(bytes)}/`)).toEqual([row.location]);
  }

  it('serves a file revived and moved to S3 again while gc was collecting it, once that collection deletes the old object', { timeout: 60_000 }, async () => {
    const { transfer } = buildProcessors(app.services);
    const alice = await newUser(app);
    const bob = await newUser(app);
    const bytes = randomBytes(MiB + 7);
    hashes.push(sha1(bytes));
    const first = await upload(alice, bytes);
    const { id: fileId } = await contentOf(app, first);
    await transfer({ fileId });
    const old = await contentOf(app, first);
    expect(old.tier).toBe('s3');
    expect((await alice.request('DELETE', `/api/files/${first}`)).status).toBe(204);
    await sleep(1100); // GC_GRACE_SECONDS=1

    // gc marks the row deleting; its delete of the object is slow to reach the gateway
    const slowDelete = held(app.services.s3!, 'remove');
    const collecting = processorsWith(app, slowDelete.store).gc({});
    expect(await slowDelete.reached).toBe(old.location);

    // meanwhile the same bytes are uploaded again: the row is revived, lands locally and moves to S3
    const second = await upload(bob, bytes);
    expect(await contentOf(app, second)).toMatchObject({ id: fileId, tier: 'local', status: 'available' });
    await transfer({ fileId });

    slowDelete.release();
    await collecting;
    await expectServedFromS3(bob, second, bytes, fileId);
  });

  it('serves a file revived and moved to S3 again while a transfer of its corrupt previous landing was finishing', { timeout: 60_000 }, async () => {
    const { verify } = buildProcessors(app.services);
    const alice = await newUser(app);
    const bob = await newUser(app);
    const bytes = randomBytes(MiB + 11);
    hashes.push(sha1(bytes));
    const first = await upload(alice, bytes);
    const landed = await contentOf(app, first);

    // the first landing's transfer has copied its bytes and is slow to record the switch
    const lateTransfer = held(app.services.s3!, 'store');
    const transferring = processorsWith(app, lateTransfer.store).transfer({ fileId: landed.id });
    await lateTransfer.reached;

    // then the local file rots, verification marks the row corrupt, and the good bytes revive it
    const damaged = Buffer.from(bytes);
    damaged[0]! ^= 0xff;
    await fsp.writeFile(app.services.local.pathOf(landed.location), damaged);
    await verify({ fileId: landed.id });
    expect((await contentOf(app, first)).status).toBe('corrupt');
    const second = await upload(bob, bytes);
    expect(await contentOf(app, second)).toMatchObject({ id: landed.id, tier: 'local', status: 'available' });

    // the new landing's transfer copies, the old one finishes (its switch refused), then the new one switches
    const newTransfer = held(app.services.s3!, 'store');
    const moving = processorsWith(app, newTransfer.store).transfer({ fileId: landed.id });
    await newTransfer.reached;
    lateTransfer.release();
    await transferring;
    newTransfer.release();
    await moving;
    await expectServedFromS3(bob, second, bytes, landed.id);
  });

  it('leaves no object in S3 when a transfer finds the local bytes changed, and the row stays local', { timeout: 60_000 }, async () => {
    const { transfer } = buildProcessors(app.services);
    const alice = await newUser(app);
    const bytes = randomBytes(MiB + 13);
    hashes.push(sha1(bytes));
    const id = await upload(alice, bytes);
    const landed = await contentOf(app, id);
    const damaged = Buffer.from(bytes);
    damaged[damaged.length - 1]! ^= 0xff;
    await fsp.writeFile(app.services.local.pathOf(landed.location), damaged);

    await expect(transfer({ fileId: landed.id })).rejects.toThrow(/no longer match/);
    expect(await contentOf(app, id)).toMatchObject({ tier: 'local', location: landed.location, status: 'available' });
    expect(await objectKeys(`blobs/${sha1(bytes)}/`)).toEqual([]);
  });
});
