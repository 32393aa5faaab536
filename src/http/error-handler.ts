import type { ErrorRequestHandler, Request, RequestHandler } from 'express';
import { AppError, ERRORS, SERVICE_RETRY_AFTER_SECONDS, isDiskFull, isServiceOutage, type ErrorCode } from '../errors.js';

/** Errors raised by express's own parsers and multer, by their codes. */
const FRAMEWORK_ERRORS: Record<string, ErrorCode> = {
  'entity.parse.failed': 'invalid_input',
  'entity.verify.failed': 'invalid_input',
  'entity.too.large': 'payload_too_large',
  'encoding.unsupported': 'invalid_input',
  'charset.unsupported': 'invalid_input',
  LIMIT_FILE_SIZE: 'payload_too_large',
  LIMIT_PART_COUNT: 'invalid_input',
  LIMIT_FILE_COUNT: 'invalid_input',
  LIMIT_FIELD_KEY: 'invalid_input',
  LIMIT_FIELD_VALUE: 'invalid_input',
  LIMIT_FIELD_COUNT: 'invalid_input',
  LIMIT_UNEXPECTED_FILE: 'invalid_input',
  MISSING_FIELD_NAME: 'invalid_input',
};

export function toAppError(error: unknown): AppError {
  if (error instanceof AppError) return error;
  const e = error as { type?: string; code?: string; message?: string; status?: number };
  const mapped = FRAMEWORK_ERRORS[e?.type ?? ''] ?? FRAMEWORK_ERRORS[e?.code ?? ''];
  if (mapped) return new AppError(mapped, e.message);
  if (isServiceOutage(error)) {
    return new AppError('unavailable', undefined, {}, { 'Retry-After': SERVICE_RETRY_AFTER_SECONDS });
  }
  if (isDiskFull(error)) return new AppError('insufficient_storage');
  // The router could not percent-decode a path parameter ("/api/files/%zz"): no such resource can exist.
  if (error instanceof URIError && /^Failed to decode param/.test(error.message)) return new AppError('not_found');
  // Malformed multipart bodies surface from busboy as plain errors with a 4xx status or a telling message.
  if (typeof e?.status === 'number' && e.status >= 400 && e.status < 500) return new AppError('invalid_input', e.message);
  if (typeof e?.message === 'string' && /^(Multipart|Malformed|Unexpected end of form)/i.test(e.message)) {
    return new AppError('invalid_input', e.message);
  }
  return new AppError('internal');
}

const MULTER_HANG_UP = /^Request (aborted|closed)$/;

/**
 * The client hung up before its request ended (a chunk cut off midway): reading the body fails with
 * ECONNRESET "aborted", or a stream reading it with a premature close. Nothing failed on our side and
 * no one will read the answer; the request log's "request aborted" line (warn) records it. multer
 * reports the same hang-up of a form upload as a plain Error "Request aborted" or "Request closed".
 */
function abortedByClient(error: unknown, req: Request): boolean {
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  if (!req.readableAborted) return false;
  return code === 'ECONNRESET' || code === 'ERR_STREAM_PREMATURE_CLOSE' || (code === undefined && MULTER_HANG_UP.test(String(message)));
}

export const errorHandler: ErrorRequestHandler = (error, req, res, _next) => {
  const appError = abortedByClient(error, req) ? new AppError('client_closed_request') : toAppError(error);
  if (['internal', 'unavailable', 'insufficient_storage'].includes(appError.code)) req.log?.error({ err: error }, 'request failed');
  if (res.headersSent) {
    // The body already started: all that is left is to cut the connection so the client sees a failure.
    res.destroy();
    return;
  }
  // a download may have set its content headers before failing; they do not describe a JSON error
  for (const header of ['Content-Disposition', 'ETag', 'Last-Modified', 'Accept-Ranges', 'Content-Length']) res.removeHeader(header);
  res.set(appError.headers);
  res.status(appError.status).type('application/json').json({ error: { code: appError.code, message: appError.message, ...appError.details }, ...appError.extra });
};

export const notFoundHandler: RequestHandler = (_req, res) => {
  res.status(404).json({ error: { code: 'not_found', message: ERRORS.not_found.message } });
};
