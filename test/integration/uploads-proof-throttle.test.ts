import { describe, expect, it } from 'vitest';
import { availableProfiles, useApp } from '../support/app.js';
import { expectErrorBody, newUser } from '../support/files.js';
import { ask, expectChallenge, openChallenges, stored, type User } from '../support/proof.js';
import { MiB, forgedProof, proofFor } from '../support/uploads.js';

const profiles = await availableProfiles('proof throttle');

describe.each(profiles)('wrong proofs throttle (%s profile)', (profile) => {
  const app = useApp(profile);

  const db = () => app.services.db.primary;
  const linksTo = async (hash: string) => {
    const [row] = await db()('files').where({ sha1: hash });
    return db()('user_files').where({ file_id: row.id });
  };
  const prove = (client: User, id: string, proof: string) => client.post(`/api/uploads/${id}/proof`, { proof });

  it('answers 429 after 5 wrong proofs for one sha1 by one user within the hour, and not to anyone else', async () => {
    const alice = await newUser(app);
    const mallory = await newUser(app);
    const bob = await newUser(app);
    const { bytes, hash } = await stored(app, alice, 1 * MiB);
    // six open challenges first, so the sixth answer is judged by the throttle alone
    const sessions = await openChallenges(mallory, bytes, 6);
    for (const [attempt, { id }] of sessions.slice(0, 5).entries()) {
      const wrong = await prove(mallory, id, forgedProof());
      expect({ attempt, status: wrong.status }).toEqual({ attempt, status: 403 });
    }
    const throttled = await prove(mallory, sessions[5]!.id, forgedProof());
    expect(throttled.status).toBe(429);
    expect(expectErrorBody(throttled.json).code).toBe('too_many_requests');
    expect(Number(throttled.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(Number(throttled.headers.get('retry-after'))).toBeLessThanOrEqual(3600);

    const honest = await ask(bob, bytes, 'fine.bin');
    const proven = await prove(bob, honest.json.uploadId, proofFor(expectChallenge(honest, bytes.length), bytes));
    expect(proven.status).toBe(201);
    expect((await linksTo(hash)).map((row: { user_id: string }) => row.user_id).sort()).toEqual([alice.userId, bob.userId].sort());
  });

  it('judges at most 5 of 12 wrong proofs sent at once: five 403, seven 429, and every session must upload', async () => {
    const alice = await newUser(app);
    const mallory = await newUser(app);
    const { bytes } = await stored(app, alice, 1 * MiB);
    const sessions = await openChallenges(mallory, bytes, 12);

    const answers = await Promise.all(sessions.map(({ id }) => prove(mallory, id, forgedProof())));
    const statuses = answers.map((answer) => answer.status).sort();
    expect(statuses).toEqual([...Array(5).fill(403), ...Array(7).fill(429)]);
    for (const { id } of sessions) expect((await mallory.get(`/api/uploads/${id}`)).json).toMatchObject({ mode: 'chunks' });
  });

  it('answers 429 to the next proof after 5 wrong ones sent one at a time, a right one too, and that session must upload', async () => {
    const alice = await newUser(app);
    const mallory = await newUser(app);
    const { bytes } = await stored(app, alice, 1 * MiB);
    for (let attempt = 0; attempt < 5; attempt++) {
      const asked = await ask(mallory, bytes, `guess-${attempt}.bin`);
      expectChallenge(asked, bytes.length);
      expect({ attempt, status: (await prove(mallory, asked.json.uploadId, forgedProof())).status }).toEqual({ attempt, status: 403 });
    }
    // a client that asks again still gets its challenge: the throttle answers the proof, as the contract says
    const later = await ask(mallory, bytes, 'later.bin');
    const throttled = await prove(mallory, later.json.uploadId, proofFor(expectChallenge(later, bytes.length), bytes));
    expect(throttled.status).toBe(429);
    expect(expectErrorBody(throttled.json).code).toBe('too_many_requests');
    expect(Number(throttled.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(Number(throttled.headers.get('retry-after'))).toBeLessThanOrEqual(3600);
    expect((await mallory.get(`/api/uploads/${later.json.uploadId}`)).json).toMatchObject({ mode: 'chunks', state: 'receiving' });
  });

  it('does not count right proofs: after 4 wrong ones a right proof links and the next wrong one is still judged (403)', async () => {
    const alice = await newUser(app);
    const bob = await newUser(app);
    const { bytes } = await stored(app, alice, 1 * MiB);
    const sessions = await openChallenges(bob, bytes, 7);
    for (const { id } of sessions.slice(0, 4)) expect((await prove(bob, id, forgedProof())).status).toBe(403);
    const right = sessions[4]!;
    expect((await prove(bob, right.id, proofFor(right.challenge, bytes))).status).toBe(201);
    expect((await prove(bob, sessions[5]!.id, forgedProof())).status).toBe(403);
    expect((await prove(bob, sessions[6]!.id, forgedProof())).status).toBe(429);
  });

  it('does not count the right answer to an expired challenge as a wrong proof: five of them, then a right proof links', async () => {
    const alice = await newUser(app);
    const bob = await newUser(app);
    const { bytes } = await stored(app, alice, 1 * MiB);
    const sessions = await openChallenges(bob, bytes, 6);
    const late = sessions.slice(0, 5);
    // the clock of the challenge, not of the test, is what expires: move its deadline into the past
    await db()('upload_sessions').whereIn('id', late.map(({ id }) => id)).update({ challenge_expires_at: Date.now() - 1 });

    for (const { id, challenge } of late) {
      const answer = await prove(bob, id, proofFor(challenge, bytes));
      expect(answer.status).toBe(403);
      expect(expectErrorBody(answer.json).code).toBe('proof_rejected');
      expect((await bob.get(`/api/uploads/${id}`)).json).toMatchObject({ mode: 'chunks', state: 'receiving' });
    }
    const last = sessions[5]!;
    expect((await prove(bob, last.id, proofFor(last.challenge, bytes))).status).toBe(201);
  });

  it('does not count a proof for content that stopped being available as a wrong proof', async () => {
    const alice = await newUser(app);
    const bob = await newUser(app);
    const { bytes, hash } = await stored(app, alice, 1 * MiB);
    const sessions = await openChallenges(bob, bytes, 5);
    await db()('files').where({ sha1: hash }).update({ status: 'corrupt' });
    for (const { id, challenge } of sessions) {
      const answer = await prove(bob, id, proofFor(challenge, bytes));
      expect(answer.status).toBe(403);
      expect(expectErrorBody(answer.json).code).toBe('proof_rejected');
    }
    // available again (say, repaired from another copy): the honest user is not locked out
    await db()('files').where({ sha1: hash }).update({ status: 'available' });
    const again = await ask(bob, bytes, 'again.bin');
    expect((await prove(bob, again.json.uploadId, proofFor(expectChallenge(again, bytes.length), bytes))).status).toBe(201);
  });
});
