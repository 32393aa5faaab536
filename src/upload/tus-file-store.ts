import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { FileStore } from '@tus/file-store';
import { ERRORS, type Upload } from '@tus/utils';
import { isDiskFull } from '../errors.js';
import { eachPiece } from '../storage/each-piece.js';
import { ignoreMissing, namesIn } from '../storage/missing-files.js';
import { StagedFile, type Keeper } from '../storage/staged-file.js';
import type { TusLocker } from './tus-locker.js';

/**
 * A write stopped because its request no longer holds the upload's lock: its process froze past the
 * lease, and another request may be writing the upload now (TusLocker.stillHeld).
 */
export class LockLost extends Error {
  constructor(uploadId: string) {
    super(`This request lost the lock of tus upload ${uploadId}.`);
  }
}

/** Where a tus upload's written slots go to be hashed, in file order (PrefixHashers.inOrder). */
export type TusHashing = (uploadId: string, filePath: string) => Keeper;

/** The ids @tus/file-store gives its uploads. */
export const TUS_ID = /^[0-9a-f]{32}$/;
/** An upload's data file `<id>` or its record `<id>.json`. */
const STORED_NAME = /^([0-9a-f]{32})(?:\.json)?$/;

/**
 * @tus/file-store with its PATCH bodies written the way chunked uploads are (StagedFile): 1 MiB slots,
 * each handed to the hash as it lands, from memory. With the file store's own write stream, the hash
 * read every byte back from the file; a tus upload ran at about two thirds of the bare @tus/server's speed.
 * The file still grows with each write, so its size stays the upload's offset, as the file store
 * reads it; creation, metadata and expiry stay the file store's.
 */
export class TusFileStore extends FileStore {
  constructor(
    options: ConstructorParameters<typeof FileStore>[0],
    private readonly hashing: TusHashing,
    private readonly locker: TusLocker,
  ) {
    super(options);
  }

  /**
   * Keeps a value of the server's in the upload's own record (so every API process sees it): the file its
   * bytes became, the SHA-1 they were found to have.
   */
  async keepServerValue(id: string, metadataKey: string, value: string): Promise<void> {
    const record = await this.configstore.get(id);
    if (!record) throw ERRORS.FILE_NOT_FOUND;
    await this.configstore.set(id, { ...record, metadata: { ...record.metadata, [metadataKey]: value } } as Upload);
  }

  /** Removes upload `id`'s file and record, either or both of which may be missing or cut short. */
  async discard(id: string): Promise<void> {
    if (!TUS_ID.test(id)) return;
    await fsp.rm(path.join(this.directory, id), { force: true });
    await fsp.rm(path.join(this.directory, `${id}.json`), { force: true });
  }

  /**
   * Removes uploads past their expiry, finished or not, and what kills left of uploads: the file store's
   * own sweep skipped a record whose size equals the offset it was created with (0), so an empty upload
   * was kept forever, and it sees only a data file paired with a record it can parse, so a data file whose
   * record a kill never wrote (creation writes the file first) or cut short, or a record whose file a kill
   * already removed, stayed for good. Those without a readable record go by their mtime (isExpired).
   * An upload is removed under its lock, as @tus/server takes it: one a request holds (a PATCH writing
   * into it, its finish hashing and linking it) is left for the next sweep, without cutting the request.
   */
  override async deleteExpired(): Promise<number> {
    const expiredBefore = Date.now() - this.getExpiration();
    let removed = 0;
    for (const id of await this.storedIds()) {
      if (!(await this.isExpired(id, expiredBefore))) continue;
      const lock = await this.locker.lockIfFree(id);
      if (!lock) continue;
      try {
        await this.discard(id);
      } finally {
        await lock.unlock();
      }
      removed += 1;
    }
    return removed;
  }

  /** Ids with a data file, a record, or both (placeholders are the orphan sweep's). */
  private async storedIds(): Promise<Set<string>> {
    return new Set((await namesIn(this.directory, STORED_NAME)).map((name) => STORED_NAME.exec(name)![1]!));
  }

  /**
   * By the record's creation date when it has one. Without one the newest mtime of the two files stands
   * in: an upload is written no earlier than it was created, so this never removes one its creation date
   * would keep, and a creation in progress (its data file just written, its record next) is young. The
   * files are stat'ed after the record was read, so a record unreadable because it is being rewritten
   * right now has a fresh mtime.
   */
  private async isExpired(id: string, expiredBefore: number): Promise<boolean> {
    const created = Date.parse((await this.configstore.get(id))?.creation_date ?? '');
    if (Number.isFinite(created)) return created < expiredBefore;
    const stats = await Promise.all([id, `${id}.json`].map((name) => fsp.stat(path.join(this.directory, name)).catch(ignoreMissing)));
    const modified = stats.map((stat) => stat?.mtimeMs);
    const newest = Math.max(...modified.filter((time) => time !== undefined));
    return Number.isFinite(newest) && newest < expiredBefore;
  }

  override async write(readable: Readable, uploadId: string, offset: number): Promise<number> {
    if (!TUS_ID.test(uploadId)) throw ERRORS.FILE_NOT_FOUND;
    const filePath = path.join(this.directory, uploadId);
    const file = await StagedFile.open(filePath);
    const writer = file.writerAt(offset, {
      keeper: this.hashing(uploadId, filePath),
      writeBehind: true,
      beforeWrite: async () => {
        if (!(await this.locker.stillHeld(uploadId))) throw new LockLost(uploadId);
      },
    });
    let received = 0;
    try {
      // an aborted PATCH ends the stream early: what did arrive is written, and the offset says so
      await eachPiece(readable, (piece) => {
        received += piece.length;
        return writer.add(piece);
      });
      await writer.finish();
      return offset + received;
    } catch (error) {
      // bytes that did arrive are kept, as the file store's own write stream kept them
      await writer.finish().catch(() => undefined);
      // a full disk and a lost lock are told apart (507 and 423, see TusEndpoint); anything else stays
      // tus's plain write error
      throw isDiskFull(error) || error instanceof LockLost ? error : ERRORS.FILE_WRITE_ERROR;
    } finally {
      await writer.release();
      file.closeInBackground();
    }
  }
}
