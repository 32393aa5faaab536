import { Router, type Response } from 'express';
import { create as contentDisposition } from 'content-disposition';
import mime from 'mime-types';
import { z } from 'zod';
import { currentUser } from '../auth/auth.middleware.js';
import { AppError } from '../errors.js';
import type { FileService, FileView } from '../files/file.service.js';
import type { FolderService } from '../files/folder.service.js';
import { assertValidName, normalizeFolder, normalizeFolderToFind } from '../files/names.js';
import type { ByteRange } from '../storage/blob-store.js';
import type { TempFiles } from '../storage/temp-file.js';
import { intactFormText, singleFileUpload, uploadedFileName } from './multipart.js';
import { parseRange } from './range.js';
import { parseInput } from './validate.js';

const nameField = z.string().max(1024).transform(assertValidName);
const uploadFields = z.object({
  folder: z.string().max(4096).default('/').transform((folder) => normalizeFolder(intactFormText(folder, 'invalid_path', 'the folder field'))),
});
// a folder looked up rather than made: one stored before a character was refused can still be reached
const listQuery = z.object({ folder: z.string().max(4096).default('/').transform(normalizeFolderToFind) });
const folderBody = z.object({ path: z.string().max(4096).transform(normalizeFolder) });
const folderQuery = z.object({ path: z.string().max(4096).transform(normalizeFolderToFind) });
const patchBody = z
  .object({ name: nameField.optional(), folder: z.string().max(4096).transform(normalizeFolder).optional() })
  .strict();

export interface FileRoutesDeps {
  files: FileService;
  folders: FolderService;
  temp: TempFiles;
  maxUploadBytes: number;
  onUploadedBytes: (count: number) => void;
}

export function fileRoutes({ files, folders, temp, maxUploadBytes, onUploadedBytes }: FileRoutesDeps): Router {
  const router = Router();
  const upload = singleFileUpload(temp, maxUploadBytes, onUploadedBytes);

  router.post('/files', async (req, res) => {
    const user = currentUser(req);
    if (!req.is('multipart/form-data')) throw new AppError('unsupported_media_type');
    await new Promise<void>((resolve, reject) => upload(req, res, (error?: unknown) => (error ? reject(error) : resolve())));
    const hashed = req.upload;
    if (!hashed) throw new AppError('invalid_input', 'Send the file in the multipart field "file".');
    try {
      const { folder } = parseInput(uploadFields, req.body);
      const name = assertValidName(uploadedFileName(req.file));
      const { file, created } = await files.linkContent(user.userId, folder, name, hashed);
      res.status(created ? 201 : 200).json(file);
    } finally {
      await temp.discard(hashed.path);
    }
  });

  router.get('/files', async (req, res) => {
    const { folder } = parseInput(listQuery, req.query);
    res.json(await folders.list(currentUser(req).userId, folder));
  });

  router.get('/files/:id', async (req, res) => {
    res.json(await files.get(currentUser(req).userId, req.params.id));
  });

  router.get('/files/:id/content', async (req, res) => {
    const userId = currentUser(req).userId;
    const file = await files.get(userId, req.params.id);
    if (req.query.redirect === '1') {
      // the client sends its Range and validators again to S3, which judges them on the same bytes
      const url = await files.presignedUrl(userId, file.id, contentDisposition(file.name));
      if (url) {
        res.redirect(302, url);
        return;
      }
    }
    setContentHeaders(res, file);
    // validators before the Range (RFC 9110 §13.2.2): a copy the client holds is still good (304)
    // even when the range it asks for would not be satisfiable
    if (req.fresh) {
      res.status(304).end();
      return;
    }
    const range = parseRange(req.headers.range, file.size);
    if (range === 'unsatisfiable') {
      throw new AppError('range_not_satisfiable', undefined, {}, { 'Content-Range': `bytes */${file.size}` });
    }
    if (req.method === 'HEAD') {
      // Opening the content only to drop it cost S3 a GetObject whose abort also closed a pooled
      // connection to the gateway; HEAD needs only to know the bytes are there, as a GET would find them.
      await files.confirmStored(userId, file.id);
      setLengthHeaders(res, file.size, range);
      res.end();
      return;
    }
    const { body } = await files.open(userId, file.id, range ?? undefined);
    setLengthHeaders(res, file.size, range);
    // A client that hung up while the content was opened has had its 'close' already: nothing would
    // ever destroy the body, and pipe would wait on the dead response holding the file or S3 socket.
    if (res.destroyed) {
      body.destroy();
      res.end();
      return;
    }
    body.on('error', (error) => res.destroy(error));
    // a client that hangs up must not keep the blob's file handle or S3 connection (pipe never lets go)
    res.on('close', () => body.destroy());
    body.pipe(res);
  });

  router.patch('/files/:id', async (req, res) => {
    // Only a JSON body is parsed: another one (curl -d sends form-urlencoded) would leave req.body unset
    // and pass for an empty change, a 200 that renamed nothing. req.is gives null only when there is no body.
    if (req.body === undefined && req.is('*/*') !== null) {
      throw new AppError('unsupported_media_type', 'Send the change as JSON (Content-Type: application/json).');
    }
    const change = parseInput(patchBody, req.body ?? {});
    res.json(await files.update(currentUser(req).userId, req.params.id, change));
  });

  router.delete('/files/:id', async (req, res) => {
    await files.remove(currentUser(req).userId, req.params.id);
    res.status(204).end();
  });

  router.post('/folders', async (req, res) => {
    const { path } = parseInput(folderBody, req.body);
    res.status(201).json(await folders.create(currentUser(req).userId, path));
  });

  router.delete('/folders', async (req, res) => {
    const { path } = parseInput(folderQuery, req.query);
    await folders.remove(currentUser(req).userId, path);
    res.status(204).end();
  });

  return router;
}

/** The length of what is served: the whole content (200), or the range with its Content-Range (206). */
function setLengthHeaders(res: Response, size: number, range: ByteRange | null): void {
  if (range) {
    res.status(206).set('Content-Range', `bytes ${range.start}-${range.end}/${size}`);
    res.set('Content-Length', String(range.end - range.start + 1));
  } else {
    res.set('Content-Length', String(size));
  }
}

function setContentHeaders(res: Response, file: FileView): void {
  res.set({
    'Content-Type': mime.lookup(file.name) || 'application/octet-stream',
    'Content-Disposition': contentDisposition(file.name),
    ETag: `"${file.sha1}"`,
    'Last-Modified': new Date(file.updatedAt).toUTCString(),
    'Accept-Ranges': 'bytes',
    'Cache-Control': 'private, no-cache',
    // the type comes from the name the user chose: a browser must not guess another (an HTML page)
    'X-Content-Type-Options': 'nosniff',
  });
}

