import type { Database } from '../db/database.js';
import type { FoldersRepository } from '../db/folders.repository.js';
import type { UserFilesRepository } from '../db/user-files.repository.js';
import { AppError, notFound } from '../errors.js';
import { folderChainWithParents, toFileView, type FileView } from './file.service.js';
import { baseName } from './names.js';

export interface FolderListing {
  folder: string;
  folders: Array<{ name: string; path: string }>;
  files: FileView[];
}

export class FolderService {
  constructor(
    private readonly deps: { db: Database; folders: FoldersRepository; userFiles: UserFilesRepository },
  ) {}

  /** Creates the folder and its parents; creating an existing folder is a no-op. */
  async create(userId: string, path: string): Promise<{ name: string; path: string }> {
    if (path === '/') throw new AppError('invalid_path', 'The root folder always exists.');
    await this.deps.db.transaction(userId, (trx) => this.deps.folders.ensure(trx, userId, folderChainWithParents(path), Date.now()));
    return { name: baseName(path), path };
  }

  async list(userId: string, folder: string): Promise<FolderListing> {
    if (folder !== '/' && !(await this.deps.folders.exists(userId, folder))) throw notFound();
    const [children, files] = await Promise.all([
      this.deps.folders.listChildren(userId, folder),
      this.deps.userFiles.listFolder(userId, folder),
    ]);
    return {
      folder,
      folders: children.map((child) => ({ name: baseName(child.path), path: child.path })),
      files: files.map(toFileView),
    };
  }

  /** Soft-deletes the folder, its subfolders and every file below it. */
  async remove(userId: string, path: string): Promise<void> {
    if (path === '/') throw new AppError('invalid_path', 'The root folder cannot be deleted.');
    const now = Date.now();
    const existed = await this.deps.db.transaction(userId, async (trx) => {
      const found = await this.deps.folders.softDeleteUnder(trx, userId, path);
      if (found) await this.deps.userFiles.softDeleteUnder(trx, userId, path, now);
      return found;
    });
    if (!existed) throw notFound();
  }
}
