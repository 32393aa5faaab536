import { randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { Knex } from 'knex';
import type { BlobsRepository } from '../db/blobs.repository.js';
import { isDeadlock, isUniqueViolation, type Database } from '../db/database.js';
import type { ContentStore } from './content-store.js';
import type { FoldersRepository } from '../db/folders.repository.js';
import { pathKey, type UserFilesRepository, type UserFileWithBlob } from '../db/user-files.repository.js';
import { AppError, notFound } from '../errors.js';
import type { ByteRange } from '../storage/blob-store.js';
import type { HashedTempFile, TempFiles } from '../storage/temp-file.js';
import { folderChain, parentOf } from './names.js';
import { isId } from '../ids.js';

export interface FileView {
  id: string;
  name: string;
  folder: string;
  size: number;
  sha1: string;
  createdAt: string;
  updatedAt: string;
}

export interface FileServiceDeps {
  db: Database;
  blobs: BlobsRepository;
  userFiles: UserFilesRepository;
  folders: FoldersRepository;
  content: ContentStore;
  temp: TempFiles;
}

/** The content was collected (or failed verification) between finding it and linking it. */
class ContentGone extends Error {}

export const toFileView = (row: Pick<UserFileWithBlob, 'id' | 'name' | 'folder' | 'size' | 'sha1' | 'created_at' | 'updated_at'>): FileView => ({
  id: row.id,
  name: row.name,
  folder: row.folder,
  size: Number(row.size),
  sha1: row.sha1,
  createdAt: new Date(Number(row.created_at)).toISOString(),
  updatedAt: new Date(Number(row.updated_at)).toISOString(),
});


export class FileService {
  constructor(private readonly deps: FileServiceDeps) {}

  /**
   * Links hashed bytes into a user's drive. If the content is already stored, only a user_files row is
   * added (dedupe) and the temp file is dropped; otherwise the temp file becomes the blob. The same
   * content under the same name is answered with the existing file (`created: false`).
   */
  async linkContent(userId: string, folder: string, name: string, temp: HashedTempFile): Promise<{ file: FileView; created: boolean }> {
    const existing = await this.deps.content.findBySha1(temp.sha1);
    if (existing?.status === 'available') {
      const linked = await this.linkStored(userId, folder, name, existing).catch((error: unknown) => {
        if (error instanceof ContentGone) return null;
        throw error;
      });
      if (linked) {
        await this.deps.temp.discard(temp.path);
        return linked;
      }
    }
    const id = await this.deps.content.storeNew(temp);
    return this.linkStored(userId, folder, name, { id, sha1: temp.sha1, size: temp.size });
  }

  /**
   * Adds a user_files row for content already stored in `files` (dedupe, instant upload). Throws
   * ContentGone (see isContentGone) if the content stopped being available meanwhile. `alsoCommit` runs
   * in the same transaction once the file is known; if it throws, nothing is linked.
   */
  async linkStored(
    userId: string,
    folder: string,
    name: string,
    content: { id: number; sha1: string; size: number },
    alsoCommit?: (trx: Knex, file: FileView) => Promise<void>,
  ): Promise<{ file: FileView; created: boolean }> {
    const now = Date.now();
    const link = () => this.deps.db.transaction(userId, async (trx) => {
      if (!(await this.deps.blobs.holdAvailable(trx, content.id, now))) throw new ContentGone();
      await this.deps.folders.ensure(trx, userId, folderChainWithParents(folder), now);
      const row = {
        id: randomUUID(), user_id: userId, file_id: content.id, name, folder, size: Number(content.size), status: 'available' as const,
        path_key: pathKey(folder, name), live: 1 as const, created_at: now, updated_at: now,
      };
      // Insert first and look for the file holding the name only if the unique key says there is one
      // (a failed statement leaves the transaction usable on MariaDB and SQLite): one round trip less.
      const violation = await this.deps.userFiles.insert(trx, row).then(
        () => null,
        (error: unknown) => {
          if (isUniqueViolation(error)) return error;
          throw error;
        },
      );
      // the answer is built from the row just written: no read back (instant upload counts round trips)
      let file = toFileView({ ...row, sha1: content.sha1 });
      if (violation) {
        const clash = await this.deps.userFiles.findByPath(trx, userId, folder, name);
        if (!clash) throw violation;
        if (clash.sha1 !== content.sha1) throw new AppError('name_conflict');
        file = toFileView(clash);
      }
      await alsoCommit?.(trx, file);
      return { file, created: !violation };
    });
    // Run again when the row holding the name went away between our insert and our look (its deletion
    // committed), so the name is taken or answered as "same file" / name_conflict; and when MariaDB chose
    // this transaction as the victim of a deadlock with gc collecting the same content (the tier-integrity
    // race answered 500 in 2 of 7 runs of 30 rounds): the retry links, or finds the content gone.
    const attempt = (retries: number): Promise<{ file: FileView; created: boolean }> =>
      link().catch((error: unknown) => {
        if (retries > 0 && (isUniqueViolation(error) || isDeadlock(error))) return attempt(retries - 1);
        throw error;
      });
    return attempt(2);
  }

  /** The user's available file at folder/name, if any. */
  async findByPath(userId: string, folder: string, name: string): Promise<UserFileWithBlob | undefined> {
    return this.deps.db.readPrimary((db) => this.deps.userFiles.findByPath(db, userId, folder, name));
  }

  async get(userId: string, id: string): Promise<FileView> {
    return toFileView(await this.find(userId, id));
  }

  async list(userId: string, folder: string): Promise<FileView[]> {
    return (await this.deps.userFiles.listFolder(userId, folder)).map(toFileView);
  }

  /** The file and a stream of its bytes (or of `range`) from whichever tier holds them. */
  async open(userId: string, id: string, range?: ByteRange): Promise<{ file: FileView; body: Readable }> {
    return this.onHoldingTier(userId, id, async (row) => ({ file: toFileView(row), body: await this.deps.content.read(row, range) }));
  }

  /**
   * Resolves once the tier holding the file confirms its bytes are there (a HEAD): fails as `open` would,
   * without opening the blob or fetching any of it.
   */
  async confirmStored(userId: string, id: string): Promise<void> {
    await this.onHoldingTier(userId, id, (row) => this.deps.content.stat(row));
  }

  /**
   * Runs `use` on the file's available row. A move between tiers may delete the local copy between
   * reading the row and using it: then the row is read again, on the primary, as a lagging replica may
   * still hold the row from before the move.
   */
  private async onHoldingTier<T>(userId: string, id: string, use: (row: UserFileWithBlob) => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const row = await this.find(userId, id, { onPrimary: attempt > 0 });
      if (row.blob_status === 'corrupt') throw new AppError('corrupt');
      try {
        return await use(row);
      } catch (error) {
        const moved = error instanceof AppError && error.code === 'unavailable' && row.tier === 'local';
        if (!moved || attempt > 0) throw error;
      }
    }
  }

  /** A presigned S3 URL for the file's bytes, or null when it is not in S3 or no public endpoint is set. */
  async presignedUrl(userId: string, id: string, contentDisposition: string): Promise<string | null> {
    const row = await this.find(userId, id);
    if (row.blob_status === 'corrupt') throw new AppError('corrupt');
    return this.deps.content.presign(row, contentDisposition);
  }

  usedBytes(userId: string): Promise<number> {
    return this.deps.userFiles.usedBytes(userId);
  }

  async update(userId: string, id: string, change: { name?: string; folder?: string }): Promise<FileView> {
    const current = await this.find(userId, id);
    const name = change.name ?? current.name;
    const folder = change.folder ?? current.folder;
    if (name !== current.name || folder !== current.folder) {
      await this.deps.db.transaction(userId, async (trx) => {
        const now = Date.now();
        await this.deps.folders.ensure(trx, userId, folderChainWithParents(folder), now);
        try {
          await this.deps.userFiles.rename(trx, userId, id, folder, name, now);
        } catch (error) {
          if (isUniqueViolation(error)) throw new AppError('name_conflict');
          throw error;
        }
      });
    }
    return this.get(userId, id);
  }

  async remove(userId: string, id: string): Promise<void> {
    if (!isId(id) || !(await this.deps.userFiles.softDelete(userId, id, Date.now()))) throw notFound();
  }

  private async find(userId: string, id: string, options?: { onPrimary: boolean }): Promise<UserFileWithBlob> {
    const row = isId(id) ? await this.deps.userFiles.findAvailable(userId, id, options) : undefined;
    if (!row) throw notFound();
    return row;
  }

}

export const isContentGone = (error: unknown): boolean => error instanceof ContentGone;

export function folderChainWithParents(folder: string): Array<{ path: string; parent: string }> {
  return folderChain(folder).map((path) => ({ path, parent: parentOf(path) }));
}
