import { isRedisUnavailable } from './cache/redis-client.js';
import { isConnectionError } from './db/database.js';

/** The one table of error codes: status and default message are defined here and nowhere else. */
export const ERRORS = {
  invalid_input: { status: 400, message: 'The request is not valid.' },
  invalid_name: { status: 400, message: 'The name is not valid.' },
  invalid_path: { status: 400, message: 'The folder path is not valid.' },
  unauthorized: { status: 401, message: 'Authentication is required.' },
  token_expired: { status: 401, message: 'The access token has expired.' },
  invalid_credentials: { status: 401, message: 'Wrong username or password.' },
  invalid_refresh_token: { status: 401, message: 'The refresh token is not valid.' },
  forbidden: { status: 403, message: 'You may not do this.' },
  proof_rejected: { status: 403, message: 'The proof of possession is wrong or its challenge is used up or expired; upload the bytes.' },
  not_found: { status: 404, message: 'Not found.' },
  method_not_allowed: { status: 405, message: 'This method is not allowed here.' },
  username_taken: { status: 409, message: 'That username is taken.' },
  name_conflict: { status: 409, message: 'An item with that name already exists in that folder.' },
  missing_chunks: { status: 409, message: 'Some chunks have not been received yet.' },
  corrupt: { status: 409, message: 'The stored bytes of this file failed verification; it cannot be served.' },
  upload_state: { status: 409, message: 'The upload is not in a state that allows this.' },
  upload_lost: { status: 410, message: 'The bytes of this upload were lost before they were stored; start a new upload.' },
  payload_too_large: { status: 413, message: 'The upload is too large.' },
  unsupported_media_type: { status: 415, message: 'Expected multipart/form-data.' },
  range_not_satisfiable: { status: 416, message: 'The requested range is not satisfiable.' },
  chunk_hash_mismatch: { status: 422, message: 'The chunk does not match its X-Chunk-Sha1.' },
  hash_mismatch: { status: 422, message: 'The uploaded bytes do not match the declared SHA-1; nothing was linked.' },
  upload_locked: { status: 423, message: 'Another request is writing this upload; try again shortly.' },
  too_many_requests: { status: 429, message: 'Too many attempts; try again later.' },
  client_closed_request: { status: 499, message: 'The client closed the connection before its request ended.' },
  internal: { status: 500, message: 'Something went wrong on our side.' },
  insufficient_storage: { status: 507, message: 'The server has no room for these bytes now; try again later.' },
  unavailable: { status: 503, message: 'A backing service is unavailable.' },
  storage_unavailable: { status: 503, message: 'The storage tier holding this file is unavailable; try again shortly.' },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof ERRORS;

export class AppError extends Error {
  readonly status: number;

  constructor(
    readonly code: ErrorCode,
    message?: string,
    readonly details: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
    /** Fields a contract puts beside `error` in the body (e.g. `missing` for 409 missing_chunks). */
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message ?? ERRORS[code].message);
    this.status = ERRORS[code].status;
  }
}

export const notFound = (): AppError => new AppError('not_found');

/** How long a client is asked to wait when MariaDB or Redis is out of reach: past a reconnect attempt or two. */
export const SERVICE_RETRY_AFTER_SECONDS = '5';

/**
 * True when MariaDB or Redis could not be reached or did not answer in time: the server's condition, not
 * a bug; the same request may succeed once the service is back (the connections come back by themselves).
 */
export function isServiceOutage(error: unknown): boolean {
  return isConnectionError(error) || isRedisUnavailable(error);
}

/**
 * True when the disk (or quota) under DATA_DIR is full: a file write's ENOSPC/EDQUOT, or SQLITE_FULL
 * from the embedded database, which lives there too. The server's condition, not a bug: the same
 * request may succeed once space is freed.
 */
export function isDiskFull(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT' || code === 'SQLITE_FULL';
}
