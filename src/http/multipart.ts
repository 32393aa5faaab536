import type { Request } from 'express';
import multer from 'multer';
import { AppError } from '../errors.js';
import type { HashedTempFile, TempFiles } from '../storage/temp-file.js';

declare module 'express-serve-static-core' {
  interface Request {
    upload?: HashedTempFile;
  }
}

/**
 * multer storage that streams the `file` part straight to a temp file, hashing as it writes, so memory
 * stays flat whatever the size. The hashed temp file is left on `req.upload` for the service.
 */
class HashingStorage implements multer.StorageEngine {
  constructor(
    private readonly temp: TempFiles,
    private readonly onBytes: (count: number) => void,
  ) {}

  _handleFile(req: Request, file: Express.Multer.File, done: (error?: unknown, info?: Partial<Express.Multer.File>) => void): void {
    this.temp.write(file.stream, this.onBytes).then(
      (hashed) => {
        req.upload = hashed;
        done(null, { path: hashed.path, size: hashed.size });
      },
      (error) => done(error),
    );
  }

  _removeFile(req: Request, file: Express.Multer.File & { path?: string }, done: (error: Error | null) => void): void {
    req.upload = undefined;
    this.temp.discard(file.path ?? '').then(() => done(null), done);
  }
}

export function singleFileUpload(temp: TempFiles, maxBytes: number, onBytes: (count: number) => void) {
  return multer({
    storage: new HashingStorage(temp, onBytes),
    // curl and browsers send UTF-8 file names without a charset parameter
    defParamCharset: 'utf8',
    // keep the name as sent: busboy would otherwise cut it to its last "/" or "\" segment (and turn
    // "." or ".." into no file at all), silently storing "a/b.txt" as "b.txt" instead of rejecting it
    preservePath: true,
    limits: { fileSize: maxBytes, files: 1, fields: 10, fieldSize: 4096, parts: 12 },
  }).single('file');
}

/**
 * Text of the form (the file part's name, a field) as busboy decoded it, refused with `code` when it holds
 * U+FFFD. busboy decodes without failing (filename= and fields as UTF-8, filename*= in its declared
 * charset): bytes that are not text in that charset become U+FFFD, another name than the one sent. The
 * bytes are gone by then, so a U+FFFD the client meant (UTF-8 EF BF BD) is refused with them.
 */
export function intactFormText(value: string, code: 'invalid_name' | 'invalid_path', what: string): string {
  if (value.includes('\ufffd')) throw new AppError(code, `${what} is not valid UTF-8 (or not valid in its declared charset)`);
  return value;
}

export function uploadedFileName(file: Express.Multer.File | undefined): string {
  return intactFormText(file?.originalname ?? '', 'invalid_name', 'the file name');
}
