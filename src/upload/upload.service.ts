import { randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { BlobRow, BlobsRepository } from '../db/blobs.repository.js';
import type { Database } from '../db/database.js';
import type { UploadRow, UploadsRepository } from '../db/uploads.repository.js';
import type { UserFilesRepository } from '../db/user-files.repository.js';
import { AppError, notFound } from '../errors.js';
import type { FileService, FileView } from '../files/file.service.js';
import { missingChunks, type ChunkClaim, type ChunkTracker } from './chunk-tracker.js';
import type { PrefixHashers } from './prefix-hasher.js';
import { CHALLENGE_TTL_MS, PROOF_MIN_SIZE, makeChallenge, type Challenge } from './proof.js';
import type { UploadStaging } from './staging.js';
import type { VerificationLock } from './verification-lock.js';
import { isId } from '../ids.js';

export const DEFAULT_CHUNK_SIZE = 8 * 1024 * 1024;

export type CreateAnswer =
  | { status: 201; body: { uploadId: string; mode: 'chunks'; chunkSize: number; chunkCount: number; missing: number[] } }
  | { status: 200; body: { uploadId: string; mode: 'proof'; challenge: Challenge } }
  | { status: 200; body: FileView & { mode: 'existing' } };

export interface UploadServiceDeps {
  db: Database;
  uploads: UploadsRepository;
  blobs: BlobsRepository;
  userFiles: UserFilesRepository;
  files: FileService;
  tracker: ChunkTracker;
  verifiers: VerificationLock;
  staging: UploadStaging;
  hashers: PrefixHashers;
  ttlSeconds: number;
  dedupeScope: 'global' | 'user';
}

export interface NewUpload {
  name: string;
  folder: string;
  size: number;
  sha1?: string;
  chunkSize?: number;
}

/** Upload sessions: creation (chunks or proof), chunk intake, state, cancel, expiry. */
export class UploadService {
  constructor(private readonly deps: UploadServiceDeps) {}

  async create(userId: string, request: NewUpload): Promise<CreateAnswer> {
    const { name, folder, size, sha1 } = request;
    // independent lookups, at once: the instant-upload path counts round trips
    const [taken, open, known] = await Promise.all([
      this.deps.files.findByPath(userId, folder, name),
      sha1 === undefined ? undefined : this.deps.uploads.findOpen(userId, { sha1, folder, name, size }, Date.now()),
      sha1 === undefined ? undefined : this.provableContent(userId, sha1, size),
    ]);
    // The same content under this name is nothing to do, unless its stored bytes failed verification:
    // then this upload is what heals them (completion revives the content and answers the same file).
    const healing = taken !== undefined && taken.sha1 === sha1 && taken.blob_status === 'corrupt';
    if (taken && !healing) {
      if (taken.sha1 === sha1) return { status: 200, body: { ...(await this.deps.files.get(userId, taken.id)), mode: 'existing' } };
      throw new AppError('name_conflict');
    }
    if (open) return this.answer(open.mode === 'proof' ? await this.freshChallenge(userId, open) : open);
    const now = Date.now();
    const chunkSize = request.chunkSize ?? DEFAULT_CHUNK_SIZE;
    const row: UploadRow = {
      id: randomUUID(), user_id: userId, name, folder, size, sha1: sha1 ?? null, verified_sha1: null, chunk_size: chunkSize,
      chunk_count: Math.ceil(size / chunkSize), mode: 'chunks', state: 'receiving', file_id: null, answered: 0, error_code: null,
      challenge_nonce: null, challenge_ranges: null, challenge_expires_at: null,
      created_at: now, updated_at: now, expires_at: now + this.deps.ttlSeconds * 1000,
    };
    if (known) Object.assign(row, challengeFields(size));
    else await this.deps.staging.ensure(row.id, size);
    try {
      await this.deps.uploads.insert(row);
    } catch (error) {
      // without its row nothing would ever remove the staged file (e.g. a full database refused the row)
      await this.deps.staging.remove(row.id).catch(() => undefined);
      throw error;
    }
    return this.answer(row);
  }

  /** Declares the SHA-1 after creation; may turn the session into an instant upload. */
  async declareSha1(userId: string, id: string, sha1: string): Promise<CreateAnswer> {
    const session = await this.find(userId, id);
    if (session.state !== 'receiving') throw new AppError('upload_state', 'The upload is no longer receiving.');
    if (session.sha1 !== null && session.sha1 !== sha1) throw new AppError('upload_state', 'A different sha1 was already declared.');
    // The same sha1 again (a retried PATCH) changes nothing, as creating again does not: above all it
    // must not re-open proof mode after a rejected proof, where the client has to upload.
    if (session.sha1 === sha1) return this.answer(session.mode === 'proof' ? await this.freshChallenge(userId, session) : session);
    const change: Partial<UploadRow> = { sha1 };
    if (session.mode === 'chunks' && (await this.provableContent(userId, sha1, session.size))) {
      Object.assign(change, challengeFields(session.size));
    }
    await this.deps.uploads.update(id, change);
    return this.answer({ ...session, ...change });
  }

  /** Stores chunk `index` at its offset; returns its length. */
  async receiveChunk(userId: string, id: string, index: number, body: Readable, chunkSha1?: string): Promise<number> {
    const session = await this.find(userId, id);
    if (session.mode !== 'chunks' || session.state !== 'receiving') {
      throw new AppError('upload_state', session.mode === 'proof' ? 'Answer the challenge first.' : 'The upload is no longer receiving.');
    }
    if (session.chunk_count === 0) throw new AppError('invalid_input', 'An empty upload takes no chunks: complete it.');
    if (!Number.isInteger(index) || index < 0 || index >= session.chunk_count) {
      throw new AppError('invalid_input', `chunk index must be 0…${session.chunk_count - 1}`);
    }
    // Two requests writing one chunk at once could leave on disk other bytes than the hash read (from
    // memory or disk): the second waits its turn with a 409 (a received chunk sent again is checked, not written).
    const claim = await this.deps.tracker.claim(id, index);
    if (!('release' in claim)) {
      throw new AppError('upload_state', `Chunk ${index} is being received by another request.`, {}, { 'Retry-After': String(claim.retryAfterSeconds) });
    }
    try {
      return await this.storeChunk(session, index, body, chunkSha1, claim);
    } finally {
      // a failed release only leaves the claim to its lease
      await claim.release().catch(() => undefined);
    }
  }

  private async storeChunk(session: UploadRow, index: number, body: Readable, chunkSha1: string | undefined, claim: ChunkClaim): Promise<number> {
    const id = session.id;
    const offset = index * session.chunk_size;
    const length = Math.min(session.chunk_size, session.size - offset);
    const already = await this.deps.tracker.has(id, index);
    // a claim lost midway (this process froze past its lease) means another writer may own these bytes
    const stillOurs = async () => {
      if (!(await claim.held())) throw new AppError('upload_state', `Another request took over chunk ${index}.`);
    };
    const filePath = this.deps.staging.pathOf(id);
    const hashing = this.deps.hashers.chunk(id, filePath, { start: offset, end: offset + length, tentative: session.sha1 !== null });
    let contiguous: number;
    let discarded = false;
    try {
      await this.deps.staging.writeChunk(id, offset, length, body, {
        expectedSha1: chunkSha1,
        alreadyReceived: already,
        beforeWrite: stillOurs,
        keeper: hashing,
      });
      if (already) return length;
      await stillOurs();
      const ttl = Math.max(1, Math.ceil((session.expires_at - Date.now()) / 1000));
      // discarded (cancelled, expired) while this chunk arrived: the discard has cleared the hash and the
      // marks already, so this chunk must leave neither behind
      discarded = !(await this.deps.tracker.mark(id, index, ttl));
      if (discarded) throw notFound();
      const prefix = await this.deps.tracker.receivedPrefix(id, session.chunk_count);
      contiguous = Math.min(prefix * session.chunk_size, session.size);
    } catch (error) {
      hashing.abandon();
      if (discarded) this.deps.hashers.drop(id);
      throw error;
    }
    this.deps.hashers.advance(id, filePath, contiguous);
    return length;
  }

  async describe(userId: string, id: string) {
    const session = await this.find(userId, id);
    // a receiving session lists what is missing, which takes every flag; past receiving only the count shows
    const flags = session.mode === 'chunks' && session.state === 'receiving' ? await this.deps.tracker.received(id, session.chunk_count) : null;
    const received =
      session.state === 'complete' ? session.chunk_count
      : flags ? flags.filter(Boolean).length
      : session.mode === 'chunks' ? await this.deps.tracker.receivedCount(id)
      : 0;
    const file = session.state === 'complete' && session.file_id ? await this.deps.files.get(userId, session.file_id).catch(() => null) : null;
    return {
      uploadId: session.id,
      name: session.name,
      folder: session.folder,
      size: session.size,
      sha1: session.sha1,
      mode: session.mode,
      state: session.state,
      chunkSize: session.chunk_size,
      chunkCount: session.chunk_count,
      received,
      missing: flags ? missingChunks(flags) : [],
      ...(file ? { file } : {}),
    };
  }

  /**
   * Ends the session first, in its row, so every API process answers 404 for it from then on; only then
   * are its staged bytes and chunk state removed. A session being verified is left to its completion
   * (409): its staged file is what the completion links. The row decides between a cancel and a
   * complete sent together, whichever process serves them.
   */
  async cancel(userId: string, id: string): Promise<void> {
    for (;;) {
      const session = await this.find(userId, id);
      if (session.state === 'verifying') throw new AppError('upload_state', 'The upload is being completed: complete it again for the outcome.');
      // not ended: a complete began verifying (or another cancel came) since the read, so read again
      if (await this.deps.uploads.endUnlessVerifying(id, Date.now())) break;
    }
    await this.discard(id);
  }

  /** Removes sessions past their expiry with their staged bytes and chunk state. */
  async collectExpired(now = Date.now()): Promise<number> {
    const expired = await this.deps.uploads.listExpired(now, 100);
    let collected = 0;
    for (const session of expired) {
      // A completion that began before the expiry owns its bytes until it ends (or its holder died):
      // asked whatever state was listed, since it may have begun verifying after the listing.
      const hold = await this.deps.verifiers.tryAcquire(session.id);
      if (!hold) continue;
      try {
        await this.discard(session.id);
      } finally {
        await hold.release();
      }
      collected += 1;
    }
    return collected;
  }

  find(userId: string, id: string): Promise<UploadRow> {
    return findLiveSession(this.deps.uploads, userId, id);
  }

  private async discard(id: string): Promise<void> {
    this.deps.hashers.drop(id);
    await this.deps.staging.remove(id);
    await this.deps.tracker.forget(id);
    await this.deps.uploads.remove(id);
    // again: a chunk marked just before the forget may have handed its bytes to the hash meanwhile
    this.deps.hashers.drop(id);
  }

  /**
   * Stored content the user may link by proof: same size, ≥ 1 MiB, available, in the dedupe scope.
   * A user locked out of proofs for this sha1 is still challenged: the contract answers their next
   * proof 429 (with Retry-After), and only then does the session become a chunk upload.
   */
  private async provableContent(userId: string, sha1: string, size: number): Promise<BlobRow | undefined> {
    if (size < PROOF_MIN_SIZE) return undefined;
    // With DEDUPE_SCOPE=user, ownership is asked whether or not anyone stores the content: asked only
    // when it was stored, its extra round trip would tell by timing what user scope keeps secret.
    const [blob, owned] = await Promise.all([
      this.deps.db.readPrimary((db) => this.deps.blobs.findBySha1(db, sha1)),
      this.deps.dedupeScope === 'user' ? this.deps.userFiles.ownsContent(userId, sha1) : true,
    ]);
    if (!owned) return undefined;
    if (!blob || blob.status !== 'available' || Number(blob.size) !== size) return undefined;
    return blob;
  }

  private async freshChallenge(userId: string, session: UploadRow): Promise<UploadRow> {
    if (session.challenge_nonce && (session.challenge_expires_at ?? 0) > Date.now()) return session;
    const provable = await this.provableContent(userId, session.sha1!, session.size);
    const change: Partial<UploadRow> = provable ? challengeFields(session.size) : { mode: 'chunks', challenge_nonce: null };
    if (!provable) await this.deps.staging.ensure(session.id, session.size);
    await this.deps.uploads.update(session.id, change);
    return { ...session, ...change };
  }

  private async answer(session: UploadRow): Promise<CreateAnswer> {
    if (session.mode === 'proof') {
      const challenge = { nonce: session.challenge_nonce!, ranges: JSON.parse(session.challenge_ranges!) };
      return { status: 200, body: { uploadId: session.id, mode: 'proof', challenge } };
    }
    const received = await this.deps.tracker.received(session.id, session.chunk_count);
    return {
      status: 201,
      body: { uploadId: session.id, mode: 'chunks', chunkSize: session.chunk_size, chunkCount: session.chunk_count, missing: missingChunks(received) },
    };
  }
}

/** The user's unexpired session `id`; unknown, foreign, expired and malformed ids all answer 404. */
export async function findLiveSession(uploads: UploadsRepository, userId: string, id: string): Promise<UploadRow> {
  return liveSession(isId(id) ? await uploads.find(userId, id) : undefined);
}

/** A session found by id, unless it is missing or expired (404 either way). */
export function liveSession(session: UploadRow | undefined): UploadRow {
  if (!session || session.expires_at <= Date.now()) throw notFound();
  return session;
}

function challengeFields(size: number): Partial<UploadRow> {
  const challenge = makeChallenge(size);
  return {
    mode: 'proof',
    challenge_nonce: challenge.nonce,
    challenge_ranges: JSON.stringify(challenge.ranges),
    challenge_expires_at: Date.now() + CHALLENGE_TTL_MS,
  };
}
