import { HEADERS as TUS_HEADERS } from '@tus/utils';

/** The header naming the file a finished upload became (on the finishing request and on HEAD). */
export const FILE_ID_HEADER = 'Filestore-File-Id';
/** The header naming the checksum algorithms the checksum extension takes. */
export const CHECKSUM_ALGORITHM_HEADER = 'Tus-Checksum-Algorithm';
/**
 * Headers beyond @tus/server's that browser code on another origin may send (preflight) and read
 * (answers). X-Request-ID is tus-js-client's `addRequestId`: left out, the preflight refuses every
 * request of such a client, an opaque network error; let through, it becomes the request's id in our logs.
 */
export const CORS_ALLOWED_HEADERS = ['Upload-Checksum', 'X-Request-ID'];
export const CORS_EXPOSED_HEADERS = [FILE_ID_HEADER, CHECKSUM_ALGORITHM_HEADER];
/**
 * The CORS headers @tus/server puts on each of its answers, for those our HTTP layer sends itself: without
 * them a browser on another origin sees a refusal (401, 404, ...) as a network error, status and body
 * hidden. Any origin, as @tus/server without `allowedOrigins`: clients send a Bearer token, never cookies
 * (no Allow-Credentials), so another site's page gets nothing its own script could not.
 */
export const TUS_CORS_HEADERS: Readonly<Record<string, string>> = {
  'Access-Control-Allow-Origin': '*',
  'Access-Control-Expose-Headers': [...TUS_HEADERS, ...CORS_EXPOSED_HEADERS].join(', '),
};
