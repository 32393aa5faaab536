import type { Cache } from '../cache/cache.js';
import type { BlobRow } from '../db/blobs.repository.js';
import type { UploadRow, UploadsRepository } from '../db/uploads.repository.js';
import { AppError, type ErrorCode } from '../errors.js';
import type { ContentStore } from '../files/content-store.js';
import { isContentGone, type FileService, type FileView } from '../files/file.service.js';
import { isId } from '../ids.js';
import type { ByteRange } from '../storage/blob-store.js';
import { missingChunks, type ChunkTracker } from './chunk-tracker.js';
import { findMovedContent } from './moved-content.js';
import type { PrefixHashers } from './prefix-hasher.js';
import { MAX_WRONG_PROOFS, WRONG_PROOF_WINDOW_SECONDS, expectedProof, proofMatches, proofThrottleKey, toByteRange } from './proof.js';
import type { UploadStaging } from './staging.js';
import { findLiveSession, liveSession } from './upload.service.js';
import type { VerificationHold, VerificationLock } from './verification-lock.js';

export type CompleteAnswer = { status: 201 | 200; file: FileView } | { status: 202; state: 'verifying' };

export interface UploadCompletionDeps {
  uploads: UploadsRepository;
  files: FileService;
  content: ContentStore;
  tracker: ChunkTracker;
  verifiers: VerificationLock;
  staging: UploadStaging;
  hashers: PrefixHashers;
  cache: Cache;
  /** How long complete waits for verification before answering 202. */
  answerWithinMs: number;
}


/** A proof's challenge was used by a concurrent answer. */
class ChallengeUsed extends Error {}

/** The answer was not right (or not allowed): the link written meanwhile is rolled back. */
class NotRight extends Error {}

/** The end of an upload: verify the bytes' SHA-1 and link them, or link stored content by proof. */
export class UploadCompletion {
  /** This process's verifications, each settling true once done here, false when another process verifies. */
  private readonly verifying = new Map<string, Promise<boolean>>();

  constructor(private readonly deps: UploadCompletionDeps) {}

  async complete(userId: string, id: string): Promise<CompleteAnswer> {
    const session = await findLiveSession(this.deps.uploads, userId, id);
    if (session.state === 'complete') return this.answerCompleted(userId, session);
    if (session.state === 'failed') throw failure(session);
    if (session.mode === 'proof') throw new AppError('upload_state', 'Answer the challenge first, or upload after a rejected proof.');
    if (session.state === 'receiving') {
      const missing = missingChunks(await this.deps.tracker.received(id, session.chunk_count));
      if (missing.length > 0) throw new AppError('missing_chunks', undefined, { missing }, {}, { missing });
      // a cancel or another complete (on any API process) may have come first: the session row says which
      if (!(await this.deps.uploads.startVerifying(id, Date.now()))) return this.complete(userId, id);
    }
    let verification = this.verifying.get(id);
    if (!verification) {
      verification = this.verifyAlone(userId, id).finally(() => this.verifying.delete(id));
      this.verifying.set(id, verification);
    }
    const settled = await Promise.race([
      verification.then(() => true),
      new Promise<false>((resolve) => setTimeout(resolve, this.deps.answerWithinMs, false).unref()),
    ]);
    if (!settled || !(await verification)) return { status: 202, state: 'verifying' };
    return this.answerCompleted(userId, await findLiveSession(this.deps.uploads, userId, id));
  }

  /** Checks a proof of possession; right → the file is linked at once, wrong → the client must upload. */
  async prove(userId: string, id: string, proof: string): Promise<{ status: 201 | 200; file: FileView }> {
    const found = isId(id) ? await this.deps.uploads.findWithContent(userId, id) : undefined;
    const session = liveSession(found?.session);
    const blob = found?.content;
    if (session.state === 'complete') return this.answerCompleted(userId, session);
    if (session.state === 'failed') throw failure(session);
    const nonce = session.challenge_nonce;
    if (session.mode !== 'proof' || !nonce) throw new AppError('upload_state', 'This upload has no open challenge.');
    if ((session.challenge_expires_at ?? 0) <= Date.now() || blob?.status !== 'available') {
      // Nothing to judge the answer against (challenge expired, content gone): no wrong proof, so no
      // strike, or an honest client would be locked out by answering late. The bytes must be sent.
      throw await this.fallBackToChunks(session);
    }
    const verdict = this.judge(userId, session, blob, proof);
    verdict.catch(() => undefined);
    // The link is written while the verdict is reached (the instant-upload path counts round trips):
    // the transaction commits only a right answer, together with the use of the challenge and the
    // session's completion; a replay racing this answer finds the challenge used.
    let nameTaken = false;
    const linked = await this.deps.files
      .linkStored(userId, session.folder, session.name, { id: blob.id, sha1: blob.sha1, size: session.size }, async (trx, file) => {
        if ((await verdict.catch(() => null)) !== 'right') throw new NotRight();
        if (!(await this.deps.uploads.completeByProof(trx, id, nonce, file.id))) throw new ChallengeUsed();
      })
      .catch((error: unknown) => {
        if (isContentGone(error) || error instanceof ChallengeUsed || error instanceof NotRight) return null;
        // Taken since the challenge: the answer is judged all the same (below), or the session would
        // answer 409 forever, its challenge never used up and wrong answers never counted.
        if (error instanceof AppError && error.code === 'name_conflict') {
          nameTaken = true;
          return null;
        }
        throw error;
      });
    if (linked) {
      // Staged bytes (of a session that began as an upload) are of no use now, and the answer does not
      // wait for their removal: a thread-pool round trip that took 5–7 ms of a proof now and then when
      // the cores were busy. Should it fail, the session's expiry removes them.
      this.deps.staging.remove(id).catch(() => undefined);
      return { status: 201, file: linked.file };
    }
    const outcome = await verdict.catch(async (error: unknown) => {
      // content collected meanwhile: the client must upload
      if (error instanceof AppError && error.code === 'unavailable') throw await this.fallBackToChunks(session);
      throw error;
    });
    if (typeof outcome === 'object') {
      // locked out of proofs for this content: the session becomes a plain upload
      await this.fallBackToChunks(session);
      throw new AppError('too_many_requests', undefined, {}, { 'Retry-After': String(outcome.retryAfterSeconds) });
    }
    // the strike was counted when the answer was judged; the fall-back uses the challenge up
    if (outcome === 'wrong') throw await this.fallBackToChunks(session);
    // Right, but the name is taken: uploading would meet the same conflict, so the session ends here
    // (as a chunk upload's completion does); the client frees the name or picks another and asks again.
    if (nameTaken && (await this.deps.uploads.failByProof(id, nonce, 'name_conflict'))) {
      this.deps.staging.remove(id).catch(() => undefined);
      throw new AppError('name_conflict');
    }
    const now = await findLiveSession(this.deps.uploads, userId, id);
    if (now.state === 'complete') return this.answerCompleted(userId, now);
    if (now.state === 'failed') throw failure(now);
    // collected or found corrupt since the challenge: the bytes must come from the client after all
    throw await this.fallBackToChunks(session);
  }

  /**
   * The throttle's verdict first, then the answer against the challenged bytes (read while the
   * throttle is asked). Every answer takes one of the wrong-proof attempts before it is compared,
   * checked and counted in one atomic step: answers sent in parallel can never have more than
   * MAX_WRONG_PROOFS judged in a window. A right answer, or one that could not be judged, hands its
   * attempt back.
   */
  private async judge(userId: string, session: UploadRow, blob: BlobRow, proof: string): Promise<'right' | 'wrong' | { retryAfterSeconds: number }> {
    const reading = this.deps.content.readRanges(blob, challengeRanges(session));
    reading.catch(() => undefined);
    const key = proofThrottleKey(userId, session.sha1!);
    const attempt = await this.deps.cache.take(key, MAX_WRONG_PROOFS, WRONG_PROOF_WINDOW_SECONDS);
    if (!attempt.taken) return { retryAfterSeconds: attempt.retryAfterSeconds };
    const bytes = await reading.catch(async (error: unknown) => {
      await this.deps.cache.giveBack(key);
      throw error;
    });
    if (!proofMatches(expectedProof(session.challenge_nonce!, bytes), proof)) return 'wrong';
    // not awaited: the link waits for this verdict (the instant path counts round trips); a lost
    // give-back leaves one strike until the window ends
    this.deps.cache.giveBack(key).catch(() => undefined);
    return 'right';
  }

  /** Turns a proof session into a chunk upload; returns the 403 that tells the client to upload. */
  private async fallBackToChunks(session: UploadRow): Promise<AppError> {
    await this.deps.staging.ensure(session.id, session.size);
    await this.deps.uploads.update(session.id, { mode: 'chunks', challenge_nonce: null });
    return new AppError('proof_rejected', undefined, { mode: 'chunks', chunkSize: session.chunk_size, chunkCount: session.chunk_count });
  }

  /**
   * Verifies the upload unless another process holds its verification (false): two verifiers would
   * race to move the staged bytes, and the loser would find them gone.
   */
  private async verifyAlone(userId: string, id: string): Promise<boolean> {
    const hold = await this.deps.verifiers.tryAcquire(id);
    if (!hold) return false;
    try {
      // the holder before this one may have ended the session just before letting go
      const session = await findLiveSession(this.deps.uploads, userId, id);
      if (session.state === 'failed') throw new AppError((session.error_code as ErrorCode | null) ?? 'hash_mismatch');
      return session.state !== 'verifying' || (await this.verify(userId, session, hold));
    } finally {
      // should this fail, the lease runs out by itself
      await hold.release().catch(() => undefined);
    }
  }

  private async verify(userId: string, session: UploadRow, hold: VerificationHold): Promise<boolean> {
    if (!(await this.deps.staging.exists(session.id))) return this.linkMoved(userId, session);
    const path = this.deps.staging.pathOf(session.id);
    const sha1 = await this.deps.hashers.finish(session.id, path, session.size);
    if (session.sha1 !== null && sha1 !== session.sha1) {
      // Never trust a client's hash: a mismatch links nothing and drops the bytes.
      await this.deps.uploads.transition(session.id, ['verifying'], { state: 'failed', error_code: 'hash_mismatch' });
      await this.deps.staging.remove(session.id);
      await this.deps.tracker.forget(session.id);
      throw new AppError('hash_mismatch');
    }
    // Before the bytes leave the staged file: a completion killed from here on is finished by the next
    // one through this sha1 (linkMoved), as the staged file will be gone.
    await this.deps.uploads.transition(session.id, ['verifying'], { verified_sha1: sha1 });
    // frozen past the lease, this process has lost the upload to another, which moves the bytes itself
    if (!(await hold.held())) return false;
    return this.linked(session, sha1, () => this.deps.files.linkContent(userId, session.folder, session.name, { path, sha1, size: session.size }));
  }

  /**
   * Finishes a completion killed after the staged bytes were moved (into the blobs, or dropped for a
   * copy already stored): links the content they became, or, if they are truly gone, fails the session
   * with upload_lost, so the client uploads again instead of completing in vain.
   */
  private async linkMoved(userId: string, session: UploadRow): Promise<true> {
    const moved = await findMovedContent(this.deps, session);
    if (!moved) {
      await this.deps.uploads.transition(session.id, ['verifying'], { state: 'failed', error_code: 'upload_lost' });
      await this.deps.tracker.forget(session.id);
      throw new AppError('upload_lost');
    }
    return this.linked(session, moved.sha1, () =>
      this.deps.files.linkStored(userId, session.folder, session.name, moved).catch((error: unknown) => {
        // collected since it was found: nothing of the upload is left
        if (isContentGone(error)) throw new AppError('upload_lost');
        throw error;
      }),
    );
  }

  /** Links the verified content and completes the session; a refusal (e.g. the name taken meanwhile) fails it. */
  private async linked(session: UploadRow, sha1: string, link: () => Promise<{ file: FileView }>): Promise<true> {
    let file: FileView;
    try {
      ({ file } = await link());
    } catch (error) {
      // A refusal is final: the bytes are stored (a new session dedupes), this one is over. A 503 is not:
      // the next complete finds the bytes by verified_sha1 and links them.
      if (error instanceof AppError && error.status < 500) {
        await this.deps.uploads.transition(session.id, ['verifying'], { state: 'failed', error_code: error.code });
      }
      throw error;
    }
    await this.deps.uploads.transition(session.id, ['verifying'], { state: 'complete', file_id: file.id, sha1 });
    await this.deps.tracker.forget(session.id);
    return true;
  }

  /**
   * 201 the first time a completed upload is reported, 200 after that. Concurrent completes all read the
   * session unanswered: the one whose update marks it answered reports 201.
   */
  private async answerCompleted(userId: string, session: UploadRow): Promise<{ status: 201 | 200; file: FileView }> {
    const file = await this.deps.files.get(userId, session.file_id!);
    if (session.answered || !(await this.deps.uploads.markAnswered(session.id))) return { status: 200, file };
    return { status: 201, file };
  }
}

/** What a failed session answers from then on. */
const failure = (session: UploadRow): AppError => new AppError((session.error_code as ErrorCode | null) ?? 'hash_mismatch');

function challengeRanges(session: UploadRow): ByteRange[] {
  return (JSON.parse(session.challenge_ranges ?? '[]') as Array<{ offset: number; length: number }>).map(toByteRange);
}
