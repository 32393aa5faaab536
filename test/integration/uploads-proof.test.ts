import { randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { availableProfiles, useApp } from '../support/app.js';
import { blobFiles, expectErrorBody, newUser } from '../support/files.js';
import { ask, expectChallenge, openChallenges, stored } from '../support/proof.js';
import { MiB, complete, forgedProof, proofFor, putChunks, uploadChunked } from '../support/uploads.js';

const profiles = await availableProfiles('instant uploads');

describe.each(profiles)('instant upload by proof of possession (%s profile)', (profile) => {
  const app = useApp(profile);

  const db = () => app.services.db.primary;
  const contentRows = (hash: string) => db()('files').where({ sha1: hash });
  const linksTo = async (hash: string) => {
    const [row] = await contentRows(hash);
    return db()('user_files').where({ file_id: row.id });
  };
  const blobsNamed = async (hash: string) => (await blobFiles(app)).filter((file) => path.basename(file).split('.')[0] === hash);

  it('links stored content for a second user who proves possession: 201, one files row, two user_files rows', async () => {
    const alice = await newUser(app);
    const bob = await newUser(app);
    const { bytes, hash } = await stored(app, alice, 2 * MiB + 17);
    const asked = await ask(bob, bytes, 'mine-too.bin', '/inbox');
    const challenge = expectChallenge(asked, bytes.length);

    const proven = await bob.post(`/api/uploads/${asked.json.uploadId}/proof`, { proof: proofFor(challenge, bytes) });
    expect(proven.status).toBe(201);
    expect(proven.json).toMatchObject({ name: 'mine-too.bin', folder: '/inbox', size: bytes.length, sha1: hash });
    expect(await contentRows(hash)).toHaveLength(1);
    expect((await linksTo(hash)).map((row: { user_id: string }) => row.user_id).sort()).toEqual([alice.userId, bob.userId].sort());
    expect(await blobsNamed(hash)).toHaveLength(1);
    expect((await bob.get(`/api/files/${proven.json.id}/content`)).bytes.equals(bytes)).toBe(true);
    expect((await bob.get(`/api/uploads/${asked.json.uploadId}`)).json).toMatchObject({ state: 'complete', file: { id: proven.json.id } });
  });

  it('answers a forged proof with 403 and turns the session into a chunk upload that completes into the one stored content', async () => {
    const alice = await newUser(app);
    const bob = await newUser(app);
    const { bytes, hash } = await stored(app, alice, 3 * MiB);
    const asked = await ask(bob, bytes, 'claimed.bin');
    expectChallenge(asked, bytes.length);
    const id = asked.json.uploadId as string;

    const forged = await bob.post(`/api/uploads/${id}/proof`, { proof: forgedProof() });
    expect(forged.status).toBe(403);
    expect(expectErrorBody(forged.json).code).toBe('proof_rejected');
    const state = await bob.get(`/api/uploads/${id}`);
    expect(state.json).toMatchObject({ mode: 'chunks', state: 'receiving', received: 0 });
    const { chunkSize, chunkCount } = state.json as { chunkSize: number; chunkCount: number };
    expect(state.json.missing).toEqual([...Array(chunkCount).keys()]);
    // asking again for the same name hands back the same session, now in chunk mode
    expect((await ask(bob, bytes, 'claimed.bin')).json).toMatchObject({ uploadId: id, mode: 'chunks' });

    await putChunks(bob, id, bytes, chunkSize, [...Array(chunkCount).keys()]);
    const completed = await complete(bob, id);
    expect(completed.status).toBe(201);
    expect(completed.json.sha1).toBe(hash);
    expect(await contentRows(hash)).toHaveLength(1);
    expect(await linksTo(hash)).toHaveLength(2);
    expect(await blobsNamed(hash)).toHaveLength(1);
    expect((await bob.get(`/api/files/${completed.json.id}/content`)).bytes.equals(bytes)).toBe(true);
  });

  it('refuses a proof replayed on a new challenge with 403, whoever replays it', async () => {
    const alice = await newUser(app);
    const bob = await newUser(app);
    const carol = await newUser(app);
    const { bytes, hash } = await stored(app, alice, 2 * MiB);
    const first = await ask(bob, bytes, 'first.bin');
    const proof = proofFor(expectChallenge(first, bytes.length), bytes);
    expect((await bob.post(`/api/uploads/${first.json.uploadId}/proof`, { proof })).status).toBe(201);

    for (const [who, name] of [[bob, 'second.bin'], [carol, 'stolen.bin']] as const) {
      const next = await ask(who, bytes, name);
      expect(expectChallenge(next, bytes.length).nonce).not.toBe(first.json.challenge.nonce);
      const replayed = await who.post(`/api/uploads/${next.json.uploadId}/proof`, { proof });
      expect(replayed.status).toBe(403);
      expect(expectErrorBody(replayed.json).code).toBe('proof_rejected');
    }
    expect(await linksTo(hash)).toHaveLength(2);
  });

  it('answers 403 to the right proof of a challenge past its 10 minutes, links nothing, and turns the session into a chunk upload', async () => {
    const alice = await newUser(app);
    const bob = await newUser(app);
    const { bytes, hash } = await stored(app, alice, 2 * MiB);
    const asked = await ask(bob, bytes, 'late.bin');
    const proof = proofFor(expectChallenge(asked, bytes.length), bytes);
    const id = asked.json.uploadId as string;
    // the clock of the challenge, not of the test, is what expires: move its deadline into the past
    await db()('upload_sessions').where({ id }).update({ challenge_expires_at: Date.now() - 1 });

    const late = await bob.post(`/api/uploads/${id}/proof`, { proof });
    expect(late.status).toBe(403);
    expect(expectErrorBody(late.json).code).toBe('proof_rejected');
    expect((await bob.get(`/api/uploads/${id}`)).json).toMatchObject({ mode: 'chunks', state: 'receiving', received: 0 });
    expect(await linksTo(hash)).toHaveLength(1);
    expect((await bob.get('/api/files')).json.files).toEqual([]);
    // the same answer again finds no challenge at all
    expect((await bob.post(`/api/uploads/${id}/proof`, { proof })).status).toBe(409);
  });

  it('never offers proof for content under 1 MiB: the second user uploads and still shares one files row', async () => {
    const alice = await newUser(app);
    const bob = await newUser(app);
    const { bytes, hash } = await stored(app, alice, MiB - 1);
    const asked = await ask(bob, bytes, 'small.bin');
    expect(asked.status).toBe(201);
    expect(asked.json).toMatchObject({ mode: 'chunks', missing: [0] });
    expect(asked.json.challenge).toBeUndefined();
    const { completed } = await uploadChunked(bob, bytes, { name: 'small-2.bin' });
    expect(completed.status).toBe(201);
    expect(await contentRows(hash)).toHaveLength(1);
    expect(await linksTo(hash)).toHaveLength(2);

    // exactly 1 MiB is provable
    const { bytes: edge } = await stored(app, alice, MiB);
    expectChallenge(await ask(bob, edge, 'edge.bin'), MiB);
  });

  it('offers no proof when the declared size differs from the stored content', async () => {
    const alice = await newUser(app);
    const bob = await newUser(app);
    const { bytes, hash } = await stored(app, alice, 2 * MiB);
    const asked = await bob.post('/api/uploads', { name: 'odd.bin', size: bytes.length + 1, sha1: hash });
    expect(asked.status).toBe(201);
    expect(asked.json.mode).toBe('chunks');
  });

  it('answers 200 with the existing file (mode "existing") when the user already has that content at that folder and name', async () => {
    const alice = await newUser(app);
    const { bytes, file } = await stored(app, alice, 2 * MiB);
    const again = await ask(alice, bytes, file.name);
    expect(again.status).toBe(200);
    expect(again.json).toEqual({ ...file, mode: 'existing' });
    expect(await db()('upload_sessions').where({ user_id: alice.userId })).toHaveLength(0);
    // other content under the same name is a name conflict, not "existing"
    expect((await ask(alice, randomBytes(2 * MiB), file.name)).status).toBe(409);
  });

  it('switches a session to proof when the sha1 of stored content is declared later with PATCH', async () => {
    const alice = await newUser(app);
    const bob = await newUser(app);
    const { bytes, hash } = await stored(app, alice, 2 * MiB);
    const created = await bob.post('/api/uploads', { name: 'later.bin', size: bytes.length });
    expect(created.json.mode).toBe('chunks');
    const declared = await bob.request('PATCH', `/api/uploads/${created.json.uploadId}`, { json: { sha1: hash } });
    const challenge = expectChallenge(declared, bytes.length);
    expect(declared.json.uploadId).toBe(created.json.uploadId);
    const staged = path.join(app.dataDir, 'uploads', `${created.json.uploadId}.part`);
    expect(await fsp.stat(staged)).toBeTruthy();
    const proven = await bob.post(`/api/uploads/${created.json.uploadId}/proof`, { proof: proofFor(challenge, bytes) });
    expect(proven.status).toBe(201);
    expect(proven.json).toMatchObject({ name: 'later.bin', sha1: hash });
    expect(await contentRows(hash)).toHaveLength(1);
    // the staged file the session began with is removed once the proof is answered
    await vi.waitFor(() => expect(fsp.stat(staged)).rejects.toThrow(/ENOENT/), { timeout: 5000 });
  });

  it('keeps a session that answered a wrong proof in chunk mode when PATCH declares the same sha1 again: 201 with what is missing', async () => {
    const alice = await newUser(app);
    const bob = await newUser(app);
    const { bytes, hash } = await stored(app, alice, 2 * MiB);
    const asked = await ask(bob, bytes, 'redeclared.bin');
    expectChallenge(asked, bytes.length);
    const id = asked.json.uploadId as string;
    expect((await bob.post(`/api/uploads/${id}/proof`, { proof: forgedProof() })).status).toBe(403);
    const { chunkSize, chunkCount } = (await bob.get(`/api/uploads/${id}`)).json as { chunkSize: number; chunkCount: number };
    await putChunks(bob, id, bytes, chunkSize, [0]);

    const again = await bob.request('PATCH', `/api/uploads/${id}`, { json: { sha1: hash } });
    expect(again.status).toBe(201);
    expect(again.json).toEqual({ uploadId: id, mode: 'chunks', chunkSize, chunkCount, missing: [...Array(chunkCount).keys()].slice(1) });
    expect((await bob.get(`/api/uploads/${id}`)).json).toMatchObject({ mode: 'chunks', state: 'receiving', received: 1 });
    expect((await bob.post(`/api/uploads/${id}/proof`, { proof: forgedProof() })).status).toBe(409);
  });

  it('judges a wrong proof on a session whose name was taken meanwhile: 403, chunk mode, and it counts as wrong', async () => {
    const alice = await newUser(app);
    const bob = await newUser(app);
    const { bytes } = await stored(app, alice, 2 * MiB);
    const asked = await ask(bob, bytes, 'taken.bin');
    expectChallenge(asked, bytes.length);
    expect((await bob.upload('/api/files', { name: 'taken.bin', bytes: randomBytes(100) })).status).toBe(201);

    const wrong = await bob.post(`/api/uploads/${asked.json.uploadId}/proof`, { proof: forgedProof() });
    expect(wrong.status).toBe(403);
    expect(expectErrorBody(wrong.json).code).toBe('proof_rejected');
    expect((await bob.get(`/api/uploads/${asked.json.uploadId}`)).json).toMatchObject({ mode: 'chunks', state: 'receiving' });
    // four more wrong answers make five: the next proof for this content is throttled
    const [last, ...others] = await openChallenges(bob, bytes, 5);
    for (const { id } of others) expect((await bob.post(`/api/uploads/${id}/proof`, { proof: forgedProof() })).status).toBe(403);
    expect((await bob.post(`/api/uploads/${last!.id}/proof`, { proof: proofFor(last!.challenge, bytes) })).status).toBe(429);
  });

  it('answers a right proof on a session whose name was taken meanwhile with 409 name_conflict: the challenge is used up, the session failed, a new one links', async () => {
    const alice = await newUser(app);
    const bob = await newUser(app);
    const { bytes, hash } = await stored(app, alice, 2 * MiB);
    const asked = await ask(bob, bytes, 'taken.bin', '/in');
    const proof = proofFor(expectChallenge(asked, bytes.length), bytes);
    const id = asked.json.uploadId as string;
    const other = await bob.upload('/api/files', { name: 'taken.bin', bytes: randomBytes(100) }, { folder: '/in' });

    const clash = await bob.post(`/api/uploads/${id}/proof`, { proof });
    expect(clash.status).toBe(409);
    expect(expectErrorBody(clash.json).code).toBe('name_conflict');
    expect((await bob.get(`/api/uploads/${id}`)).json).toMatchObject({ mode: 'proof', state: 'failed' });
    expect(await linksTo(hash)).toHaveLength(1);
    // the session is over: the same answer, or completing, meets the same conflict
    expect(expectErrorBody((await bob.post(`/api/uploads/${id}/proof`, { proof })).json).code).toBe('name_conflict');
    expect(expectErrorBody((await complete(bob, id)).json).code).toBe('name_conflict');

    // once the name is free again, asking again opens a new session whose challenge links at once
    expect((await bob.request('DELETE', `/api/files/${other.json.id}`)).status).toBe(204);
    const again = await ask(bob, bytes, 'taken.bin', '/in');
    expect(again.json.uploadId).not.toBe(id);
    const proven = await bob.post(`/api/uploads/${again.json.uploadId}/proof`, { proof: proofFor(expectChallenge(again, bytes.length), bytes) });
    expect(proven.status).toBe(201);
    expect(proven.json).toMatchObject({ name: 'taken.bin', folder: '/in', sha1: hash });
  });
});

describe.each(profiles)('instant upload with DEDUPE_SCOPE=user (%s profile)', (profile) => {
  const app = useApp(profile, { DEDUPE_SCOPE: 'user' });

  it("offers another user chunks instead of proof, while the owner may still prove her own content", async () => {
    const alice = await newUser(app);
    const bob = await newUser(app);
    const { bytes, hash } = await stored(app, alice, 2 * MiB);
    const bobs = await ask(bob, bytes, 'copy.bin');
    expect(bobs.status).toBe(201);
    expect(bobs.json).toMatchObject({ mode: 'chunks' });
    expect(bobs.json.challenge).toBeUndefined();

    const alices = await ask(alice, bytes, 'second-copy.bin');
    const proven = await alice.post(`/api/uploads/${alices.json.uploadId}/proof`, { proof: proofFor(expectChallenge(alices, bytes.length), bytes) });
    expect(proven.status).toBe(201);

    await putChunks(bob, bobs.json.uploadId, bytes, bobs.json.chunkSize, [...Array(bobs.json.chunkCount).keys()]);
    const completed = await complete(bob, bobs.json.uploadId);
    expect(completed.status).toBe(201);
    expect(completed.json.sha1).toBe(hash);
    expect((await bob.get(`/api/files/${completed.json.id}/content`)).bytes.equals(bytes)).toBe(true);
  });

  it("asks the database as much about content another user stores as about content no one stores (no timing side channel)", async () => {
    const alice = await newUser(app);
    const bob = await newUser(app);
    const { bytes } = await stored(app, alice, 2 * MiB);
    // a token's first use looks its user up once: not part of what either question costs
    expect((await bob.get('/api/me')).status).toBe(200);
    const { primary, replica } = app.services.db;
    const queriesDuring = async (call: () => Promise<unknown>) => {
      let count = 0;
      const counting = () => void (count += 1);
      primary.on('query', counting);
      if (replica !== primary) replica.on('query', counting);
      try {
        await call();
      } finally {
        primary.off('query', counting);
        if (replica !== primary) replica.off('query', counting);
      }
      return count;
    };
    const forStored = await queriesDuring(async () => expect((await ask(bob, bytes, 'a.bin')).json.mode).toBe('chunks'));
    const forUnknown = await queriesDuring(async () => expect((await ask(bob, randomBytes(bytes.length), 'b.bin')).json.mode).toBe('chunks'));
    expect(forStored).toBe(forUnknown);
  });
});
