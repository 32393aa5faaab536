import { randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { availableProfiles, useApp } from '../support/app.js';
import { expectErrorBody, newUser, sha1 } from '../support/files.js';
import { MiB, complete, putChunks } from '../support/uploads.js';

const profiles = await availableProfiles('complete recovery races');

/**
 * A complete that finds its staged file gone (its process was killed after moving the bytes) looks for
 * the blob file it had moved. It must only ever take a file no row points at: gc may be collecting the
 * file of a row of that content at that very moment.
 */
describe.each(profiles)('recovering a completion next to gc (%s profile)', (profile) => {
  const app = useApp(profile);

  it("never takes the file of a row gc is collecting: the lost upload answers 410, and the content stays storable and readable", async () => {
    const alice = await newUser(app);
    const bob = await newUser(app);
    const bytes = randomBytes(2 * MiB + 5);
    const hash = sha1(bytes);

    // alice's copy is unreferenced and gc has begun collecting it (available → deleting)
    const stored = await alice.upload('/api/files', { name: 'old.bin', bytes });
    expect((await alice.request('DELETE', `/api/files/${stored.json.id}`)).status).toBe(204);
    const row = (await app.services.content.findBySha1(hash))!;
    // no grace: the deletion a moment ago counts as long past
    expect(await app.services.blobs.markDeleting(row.id, Date.now() + 1000, Date.now())).toBe(true);

    // bob's completion of the same content was killed after its staged file left: as the crash left it
    const created = await bob.post('/api/uploads', { name: 'new.bin', size: bytes.length, sha1: hash, chunkSize: MiB });
    const id = created.json.uploadId as string;
    await putChunks(bob, id, bytes, MiB, [0, 1, 2]);
    await app.services.db.primary('upload_sessions').where({ id }).update({ state: 'verifying', verified_sha1: hash });
    await fsp.rm(`${app.dataDir}/uploads/${id}.part`);

    const recovered = await complete(bob, id);
    expect(recovered.status).toBe(410);
    expect(expectErrorBody(recovered.json).code).toBe('upload_lost');

    // gc finishes what it began; the content can then be stored anew and read back exactly
    await app.services.local.remove(row.location);
    await app.services.blobs.forgetCollected({ ...row, status: 'deleting' });
    const again = await bob.upload('/api/files', { name: 'again.bin', bytes });
    expect(again.status).toBe(201);
    expect((await bob.get(`/api/files/${again.json.id}/content`)).bytes.equals(bytes)).toBe(true);
  });
});

describe.each(profiles)('recovering a completion next to a store of the same content (%s profile)', (profile) => {
  const app = useApp(profile);

  it("keeps the bytes when the file it claimed was a store's own, adopted just before that store's row: the row is pointed at them", async () => {
    const { content, local, blobs, db } = app.services;
    const bytes = randomBytes(MiB + 7);
    const hash = sha1(bytes);
    // a store of this content has adopted its file and is about to insert its row
    const temp = `${app.dataDir}/tmp-${hash}`;
    await fsp.writeFile(temp, bytes);
    const adopted = await local.adopt(temp, hash);

    // a recovery of the same content claims that file (it has no row yet); while it hashes it, the store inserts its row
    const id = await content.keepAdopted(hash, bytes.length, async () => {
      const now = Date.now();
      await db.write(null, (knex) => blobs.insert(knex, { sha1: hash, size: bytes.length, tier: 'local', location: adopted, status: 'available', created_at: now, updated_at: now, verified_at: now }));
      return true;
    });

    const row = (await content.findBySha1(hash))!;
    expect(row.id).toBe(id);
    expect(await local.holds(row.location)).toBe(true);
    const stream = await content.read(row);
    const read: Buffer[] = [];
    for await (const piece of stream) read.push(piece as Buffer);
    expect(Buffer.concat(read).equals(bytes)).toBe(true);
  });
});

describe.each(profiles)('collecting expired sessions next to a completion (%s profile)', (profile) => {
  const app = useApp(profile);

  it('leaves an expired session alone while its verification is held, even if it was listed before it began verifying', async () => {
    const alice = await newUser(app);
    const created = await alice.post('/api/uploads', { name: 'listed.bin', size: MiB, chunkSize: MiB });
    const id = created.json.uploadId as string;
    // the collection's listing saw "receiving"; the completion took the lock right after
    const hold = (await app.services.verifiers.tryAcquire(id))!;
    await app.services.uploads.collectExpired(Date.now() + app.services.config.UPLOAD_TTL_SECONDS * 1000 + 1000);
    expect(await app.services.db.primary('upload_sessions').where({ id })).toHaveLength(1);
    await hold.release();
  });

  it('leaves an expired session alone while its verification is held, and collects it once the holder lets go', async () => {
    const alice = await newUser(app);
    const bytes = randomBytes(MiB + 1);
    const created = await alice.post('/api/uploads', { name: 'late.bin', size: bytes.length, chunkSize: MiB });
    const id = created.json.uploadId as string;
    await putChunks(alice, id, bytes, MiB, [0, 1]);
    // a completion began just before the expiry and is verifying (on this process or another)
    await app.services.db.primary('upload_sessions').where({ id }).update({ state: 'verifying' });
    const hold = (await app.services.verifiers.tryAcquire(id))!;
    const staged = `${app.dataDir}/uploads/${id}.part`;
    const afterExpiry = Date.now() + app.services.config.UPLOAD_TTL_SECONDS * 1000 + 1000;

    await app.services.uploads.collectExpired(afterExpiry);
    expect(await app.services.db.primary('upload_sessions').where({ id })).toHaveLength(1);
    await expect(fsp.access(staged)).resolves.toBeUndefined();

    await hold.release();
    await app.services.uploads.collectExpired(afterExpiry);
    expect(await app.services.db.primary('upload_sessions').where({ id })).toHaveLength(0);
    await expect(fsp.access(staged)).rejects.toThrow();
  });
});
