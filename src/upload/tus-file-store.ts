import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { FileStore } from '@tus/file-store';
import { ERRORS, type Upload } from '@tus/utils';
import { isDiskFull } from '../errors.js';
import { eachPiece } from '../storage/each-piece.js';
import { StagedFile, type Keeper } from '../storage/staged-file.js';

/** Where a tus upload's written slots go to be hashed, in file order (PrefixHashers.inOrder). */
export type TusHashing = (uploadId: string, filePath: string) => Keeper;

/** The ids @tus/file-store gives its uploads. */
export const TUS_ID = /^[0-9a-f]{32}$/;

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
   * Removes uploads past their expiry, finished or not. The file store's own sweep skips a record whose
   * size equals the offset it was created with (0), so an empty upload was kept forever.
   */
  override async deleteExpired(): Promise<number> {
    const expiredBefore = Date.now() - this.getExpiration();
    let removed = 0;
    for (const id of await this.configstore.list!()) {
      const created = (await this.configstore.get(id))?.creation_date;
      if (!created || new Date(created).getTime() >= expiredBefore) continue;
      // the file store refuses to remove a record whose file is gone: the record alone goes then
      await this.remove(id).catch(() => this.configstore.delete(id));
      removed += 1;
    }
    return removed;
  }

  override async write(readable: Readable, uploadId: string, offset: number): Promise<number> {
    if (!TUS_ID.test(uploadId)) throw ERRORS.FILE_NOT_FOUND;
    const filePath = path.join(this.directory, uploadId);
    const file = await StagedFile.open(filePath);
    const writer = file.writerAt(offset, { keeper: this.hashing(uploadId, filePath), writeBehind: true });
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
      // a full disk is told apart (507, see TusEndpoint); anything else stays tus's plain write error
      throw isDiskFull(error) ? error : ERRORS.FILE_WRITE_ERROR;
    } finally {
      await writer.release();
      file.closeInBackground();
    }
  }
}
