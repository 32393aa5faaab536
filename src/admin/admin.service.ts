import type { Database } from '../db/database.js';
import type { UsersRepository } from '../db/users.repository.js';
import { AppError, notFound } from '../errors.js';
import type { JobQueue, QueueStats } from '../jobs/job-queue.js';
import { isId } from '../ids.js';


/** Operations for admins: the first registered user and the usernames in ADMIN_USERS. */
export class AdminService {
  constructor(
    private readonly deps: { db: Database; users: UsersRepository; jobs: JobQueue; adminUsernames: string[] },
  ) {}

  async assertAdmin(user: { userId: string; username: string }): Promise<void> {
    if (this.deps.adminUsernames.includes(user.username)) return;
    if ((await this.deps.users.firstUserId()) === user.userId) return;
    throw new AppError('forbidden', 'Only admins may do this.');
  }

  jobStats(): Promise<QueueStats> {
    return this.deps.jobs.stats();
  }

  /** Queues a re-hash of the content behind a user file id (any user's); returns the content's id. */
  async verifyFile(userFileId: string): Promise<number> {
    const row = isId(userFileId)
      ? await this.deps.db.readPrimary((db) => db('user_files').where({ id: userFileId }).first('file_id'))
      : undefined;
    if (!row) throw notFound();
    const fileId = Number(row.file_id);
    await this.deps.jobs.enqueue('verify', { fileId }, { key: `verify:${fileId}` });
    return fileId;
  }
}
