import fsp from 'node:fs/promises';
import path from 'node:path';
import { Server, type ServerOptions } from '@tus/server';
import { ERRORS as TUS_ERRORS, Uid, type Locker, type Upload } from '@tus/utils';
import type { Logger } from 'pino';
import type { ServerRequest } from 'srvx';
import { AppError, ERRORS, isDiskFull, isServiceOutage } from '../errors.js';
import type { FileService } from '../files/file.service.js';
import { nameProblem, normalizeFolder } from '../files/names.js';
import type { TempFiles } from '../storage/temp-file.js';
import type { PrefixHashers } from './prefix-hasher.js';
import { LockLost, TUS_ID, TusFileStore } from './tus-file-store.js';
import type { TusLocker } from './tus-locker.js';
import { CORS_ALLOWED_HEADERS, CORS_EXPOSED_HEADERS, FILE_ID_HEADER } from './tus-headers.js';
import { FILE_METADATA_KEY, OWNER_METADATA_KEY, SERVER_METADATA_KEYS, SHA1_METADATA_KEY, notUtf8 } from './tus-metadata.js';

/** Set by our HTTP layer after authentication (any client-sent value is overwritten). */
export const USER_HEADER = 'x-filestore-user';
const TUS_PATH = '/api/tus';
/** Owners of uploads already looked up are kept, at most this many (every tus request asks). */
const MAX_KNOWN_OWNERS = 10_000;

export interface TusEndpointDeps {
  dataDir: string;
  ttlSeconds: number;
  maxSize: number;
  locker: TusLocker;
  files: FileService;
  temp: TempFiles;
  hashers: PrefixHashers;
  logger: Logger;
}

/** A JSON error in the shape @tus/server sends for errors thrown from its hooks. */
function refuse(status: number, code: string, message: string): { status_code: number; body: string } {
  return { status_code: status, body: JSON.stringify({ error: { code, message } }) };
}

/**
 * The locker, with a lock that waited its whole acquire timeout (another request holds the upload and
 * did not let go) answering 423 upload_locked, which tus clients retry, instead of @tus's bare 500.
 */
function lockedAsRefusal(locker: Locker): Locker {
  return {
    newLock(id) {
      const lock = locker.newLock(id);
      return {
        lock: (signal, requestRelease) =>
          lock.lock(signal, requestRelease).catch((error: unknown) => {
            throw error === TUS_ERRORS.ERR_LOCK_TIMEOUT ? refuse(ERRORS.upload_locked.status, 'upload_locked', ERRORS.upload_locked.message) : error;
          }),
        unlock: () => lock.unlock(),
      };
    },
  };
}

/**
 * @tus/server v2 with @tus/file-store under DATA_DIR/tus (its writes ours: TusFileStore). Uploads carry
 * their owner in metadata; a finished upload is hashed (as PATCHes land), checked against an optional `sha1`
 * metadata value, and linked through the same path as chunked uploads. The finished upload file is
 * hard-linked into the blob store, so it stays addressable (HEAD) until it expires.
 */
export class TusEndpoint {
  readonly server: Server;
  private readonly store: TusFileStore;
  /**
   * An upload's owner never changes, so it is read from the upload's metadata once: the read went through
   * the thread pool behind the upload's own disk writes and took 1.2 ms of each 8 MiB PATCH (23 ms).
   */
  private readonly owners = new Map<string, string>();
  private readonly locker: Locker;
  /** The id each creation request gave its upload, to remove what a refused creation left. */
  private readonly creations = new WeakMap<ServerRequest, string>();

  constructor(private readonly deps: TusEndpointDeps) {
    this.locker = lockedAsRefusal(deps.locker);
    this.store = new TusFileStore(
      { directory: path.join(deps.dataDir, 'tus'), expirationPeriodInMilliseconds: deps.ttlSeconds * 1000 },
      (id, filePath) => deps.hashers.inOrder(this.hashKey(id), filePath),
      deps.locker,
    );
    this.store.extensions.push('checksum');
    const options: ServerOptions & { datastore: TusFileStore } = {
      path: TUS_PATH,
      datastore: this.store,
      locker: this.locker,
      maxSize: deps.maxSize,
      // "/api/tus/<id>", which clients resolve against the URL they created the upload at: an absolute one
      // was built from the Host the server saw, which behind a reverse proxy (TLS in front, an upstream's
      // name as Host) is not where the client can reach it
      relativeLocation: true,
      allowedHeaders: CORS_ALLOWED_HEADERS,
      exposedHeaders: CORS_EXPOSED_HEADERS,
      namingFunction: (req) => {
        const id = Uid.rand();
        this.creations.set(req, id);
        return id;
      },
      onUploadCreate: (req, upload) => this.onCreate(req, upload),
      onUploadFinish: (req, upload) => this.onFinish(req, upload),
      // tus answers a failure with a bare 500 text and keeps what it knows to itself: log it here (the
      // file store passes only its own FILE_WRITE_ERROR, without the system error beneath, but for a full
      // disk, which is the server's condition and answers 507 like the other routes)
      onResponseError: async (req, err) => {
        await this.discardRefusedCreation(req);
        if (err instanceof LockLost) return refuse(ERRORS.upload_locked.status, 'upload_locked', ERRORS.upload_locked.message);
        const outage = isServiceOutage(err);
        const full = isDiskFull(err);
        const status = outage ? 503 : full ? 507 : err instanceof Error ? 500 : err.status_code;
        if (status >= 500 && status !== 501) this.deps.logger.error({ err, method: req.method, url: req.url }, 'tus request failed');
        if (outage) return refuse(503, 'unavailable', ERRORS.unavailable.message);
        return full ? refuse(507, 'insufficient_storage', ERRORS.insufficient_storage.message) : undefined;
      },
    };
    this.server = new Server(options);
  }

  /** The owner of upload `id`, or null when there is no such upload. */
  async ownerOf(id: string): Promise<string | null> {
    if (!TUS_ID.test(id)) return null;
    const known = this.owners.get(id);
    if (known !== undefined) return known;
    let owner: string | null;
    try {
      owner = (await this.store.getUpload(id)).metadata?.[OWNER_METADATA_KEY] ?? null;
    } catch {
      return null;
    }
    if (owner !== null) this.rememberOwner(id, owner);
    return owner;
  }

  /** The largest upload, in bytes (Tus-Max-Size). */
  get maxSize(): number {
    return this.deps.maxSize;
  }

  /** Upload `id`'s offset, and how many bytes it still takes (up to the largest upload, while its length is deferred). */
  async progressOf(id: string): Promise<{ offset: number; room: number }> {
    const upload = await this.store.getUpload(id).catch(() => {
      throw new AppError('not_found');
    });
    return { offset: upload.offset, room: (upload.size ?? this.deps.maxSize) - upload.offset };
  }

  collectExpired(): Promise<number> {
    return this.server.cleanUpExpiredUploads();
  }

  private async onCreate(req: ServerRequest, upload: Upload) {
    const metadata = upload.metadata ?? {};
    const undecodable = notUtf8(req.headers.get('upload-metadata') ?? '', ['filename', 'folder']);
    if (undecodable) throw refuse(400, undecodable === 'filename' ? 'invalid_name' : 'invalid_path', `metadata ${undecodable} is not valid UTF-8`);
    const filename = metadata.filename ?? '';
    const problem = nameProblem(filename);
    if (problem) throw refuse(400, 'invalid_name', `metadata filename: ${problem}`);
    let folder: string;
    try {
      folder = normalizeFolder(metadata.folder ?? '/');
    } catch (error) {
      throw refuse(400, 'invalid_path', (error as Error).message);
    }
    if (metadata.sha1 !== undefined && metadata.sha1 !== null && !/^[0-9a-f]{40}$/.test(metadata.sha1)) {
      throw refuse(400, 'invalid_input', 'metadata sha1 must be 40 lowercase hex characters');
    }
    const userId = this.userOf(req);
    this.rememberOwner(upload.id, userId);
    const clientMetadata = Object.fromEntries(Object.entries(metadata).filter(([key]) => !SERVER_METADATA_KEYS.includes(key)));
    return { metadata: { ...clientMetadata, filename, folder, [OWNER_METADATA_KEY]: userId } };
  }

  /**
   * A creation's client learns its upload's URL only from a 201 (@tus/server sends no Location with a
   * refusal): whatever a refused one left (an empty file whose record a full disk refused, bytes of a
   * creation-with-upload, a finished upload that could not be linked) could never be resumed, and
   * a retrying client would leave one per try. A record the disk cut short was never swept either.
   */
  private async discardRefusedCreation(req: ServerRequest): Promise<void> {
    const id = req.method === 'POST' ? this.creations.get(req) : undefined;
    if (id === undefined) return;
    this.owners.delete(id);
    await this.store.discard(id).catch((err: unknown) => this.deps.logger.warn({ err, id }, 'could not remove a refused tus creation'));
  }

  private rememberOwner(id: string, userId: string): void {
    if (this.owners.size >= MAX_KNOWN_OWNERS) this.owners.clear();
    this.owners.set(id, userId);
  }

  private async onFinish(req: ServerRequest, upload: Upload) {
    try {
      return { headers: { [FILE_ID_HEADER]: await this.linkOnce(upload.id, this.userOf(req)) } };
    } catch (error) {
      if (error instanceof AppError) throw refuse(error.status, error.code, error.message);
      throw error;
    }
  }

  /**
   * For HEAD: an upload that holds all its bytes but was never linked (a kill -9 came between its last
   * byte and its link) is linked now, since tus clients resume with HEAD and, seeing every byte there,
   * report success without sending another PATCH. Returns the file id, or null when the upload is not
   * complete or its name is taken (it stays for a later HEAD or an empty PATCH).
   */
  async linkIfComplete(id: string, userId: string): Promise<string | null> {
    const upload = await this.store.getUpload(id).catch(() => null);
    if (!upload || upload.size === undefined || upload.offset !== upload.size || this.expired(upload)) return null;
    const linked = upload.metadata?.[FILE_METADATA_KEY];
    if (linked) return linked;
    try {
      return await this.linkOnce(id, userId);
    } catch (error) {
      if (error instanceof AppError && error.code === 'name_conflict') return null;
      // @tus's own refusals: the upload was removed meanwhile (DELETE, expiry: HEAD then says so itself),
      // or another request held it past the lock timeout
      const status = (error as { status_code?: number }).status_code;
      if (status === 404 || status === 410) return null;
      if (status === ERRORS.upload_locked.status) throw new AppError('upload_locked');
      throw error;
    }
  }

  private expired(upload: Upload): boolean {
    return upload.creation_date !== undefined && Date.parse(upload.creation_date) + this.deps.ttlSeconds * 1000 < Date.now();
  }

  /**
   * Hashes, checks and links a finished upload, once. @tus/server calls its finish hook after letting go
   * of the upload's lock, and again for every PATCH that finds the upload complete (an empty one will
   * do): this takes the lock itself and, once linked, only answers with the file it linked. The bytes
   * are linked before they leave the upload, so a refusal (a name taken) leaves them there for a retry.
   */
  private async linkOnce(id: string, userId: string): Promise<string> {
    const lock = this.locker.newLock(id);
    await lock.lock(new AbortController().signal, () => undefined);
    try {
      const current = await this.store.getUpload(id);
      const linked = current.metadata?.[FILE_METADATA_KEY];
      if (linked) return linked;
      const source = current.storage!.path;
      const size = current.size ?? current.offset;
      let sha1 = current.metadata?.[SHA1_METADATA_KEY];
      if (!sha1) {
        sha1 = await this.deps.hashers.finish(this.hashKey(id), source, size);
        await this.store.keepServerValue(id, SHA1_METADATA_KEY, sha1);
      }
      const declared = current.metadata?.sha1;
      if (declared && declared !== sha1) {
        await this.store.remove(id);
        throw new AppError('hash_mismatch', 'The uploaded bytes do not match the declared sha1; nothing was linked.');
      }
      const fileId = await this.link(userId, current, source, sha1, size);
      await this.store.keepServerValue(id, FILE_METADATA_KEY, fileId);
      await this.leaveEmptyPlaceholder(source, size);
      return fileId;
    } finally {
      await lock.unlock();
    }
  }

  /** Links the upload's bytes (through a hard link: no copy) as the user's file; returns its id. */
  private async link(userId: string, upload: Upload, source: string, sha1: string, size: number): Promise<string> {
    const link = path.join(this.deps.temp.dir, `tus-${upload.id}`);
    await fsp.mkdir(this.deps.temp.dir, { recursive: true });
    await fsp.rm(link, { force: true });
    await fsp.link(source, link);
    try {
      const { file } = await this.deps.files.linkContent(userId, upload.metadata!.folder!, upload.metadata!.filename!, { path: link, sha1, size });
      return file.id;
    } finally {
      await this.deps.temp.discard(link);
    }
  }

  /**
   * Puts a sparse file of the same size in place of a linked upload's bytes (an atomic rename): the upload
   * keeps answering HEAD with Upload-Offset = Upload-Length, but holds no copy of the content (which may
   * later move to S3).
   */
  private async leaveEmptyPlaceholder(source: string, size: number): Promise<void> {
    const placeholder = `${source}.placeholder`;
    const handle = await fsp.open(placeholder, 'w');
    try {
      await handle.truncate(size);
    } finally {
      await handle.close();
    }
    await fsp.rename(placeholder, source);
  }

  /**
   * The authenticated user. Requests from node carry the express request (authenticated, `user` set);
   * requests we build ourselves (checksum PATCH) carry USER_HEADER, set by us after authentication.
   */
  private userOf(req: ServerRequest): string {
    const node = (req.runtime?.node?.req ?? null) as { user?: { userId: string } } | null;
    const userId = node ? node.user?.userId : req.headers.get(USER_HEADER);
    if (!userId) throw refuse(401, 'unauthorized', 'Authentication is required.');
    return userId;
  }

  private hashKey(id: string): string {
    return `tus:${id}`;
  }
}
