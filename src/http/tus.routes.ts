import fs from 'node:fs';
import { Readable, finished } from 'node:stream';
import { Router, type Request, type Response } from 'express';
import { NodeRequest, sendNodeResponse } from 'srvx/node';
import { currentUser } from '../auth/auth.middleware.js';
import { AppError, ERRORS, SERVICE_RETRY_AFTER_SECONDS, notFound } from '../errors.js';
import type { TempFiles } from '../storage/temp-file.js';
import { USER_HEADER, type TusEndpoint } from '../upload/tus-endpoint.js';
import { CHECKSUM_ALGORITHM_HEADER, FILE_ID_HEADER, TUS_CORS_HEADERS } from '../upload/tus-headers.js';
import { clientMetadata } from '../upload/tus-metadata.js';

const CHECKSUM_MISMATCH = 460;

const TUS_PATHS = ['/tus', '/tus/{*rest}'];

/**
 * /api/tus before authentication. Its headers are set before anything can refuse the request, so our
 * own refusals (401, 404 for another user's upload, 400, 405, 423) carry Tus-Resumable and the CORS
 * headers as @tus/server's answers do: tus 1.0 requires the former on every response but OPTIONS's,
 * and browser code on another origin reads no status or body without the latter. OPTIONS (tus
 * discovery, and CORS preflights, which browsers send without credentials) is answered here, token or
 * not: it tells only the server's capabilities, the same on every path.
 */
export function tusPublicRoutes(tus: TusEndpoint): Router {
  const router = Router();
  router.all(TUS_PATHS, (_req, res, next) => {
    res.setHeader('Tus-Resumable', TUS_VERSION);
    res.setHeader(CHECKSUM_ALGORITHM_HEADER, 'sha1');
    res.set(TUS_CORS_HEADERS);
    next();
  });
  router.options(TUS_PATHS, async (req, res) => {
    req.url = req.originalUrl.split('?')[0]!;
    await sendTusAnswer(res, await tus.server.handleWeb(tusRequest(req, res)));
  });
  return router;
}

/**
 * /api/tus after authentication: ownership in front of @tus/server (another user's upload URL is 404,
 * HEAD included), plus the tus checksum extension, which @tus/server lacks: a PATCH carrying
 * `Upload-Checksum: sha1 <base64>` is staged and verified before a byte of it reaches the upload.
 */
export function tusRoutes(tus: TusEndpoint, temp: TempFiles): Router {
  const router = Router();
  router.all(TUS_PATHS, async (req, res) => {
    applyMethodOverride(req);
    // @tus/server would also serve GET (an upload's bytes): not part of tus, and a linked upload holds none
    if (!TUS_METHODS.includes(req.method)) {
      throw new AppError('method_not_allowed', `tus takes ${TUS_METHODS.join(', ')}.`, {}, { Allow: TUS_METHODS.join(', ') });
    }
    const version = req.get('tus-resumable');
    if (version !== undefined && version !== TUS_VERSION) {
      // tus: a version the server does not speak is 412 with the versions it does (@tus/server says 400)
      res.status(412).set('Tus-Version', TUS_VERSION);
      res.json({ error: { code: 'invalid_input', message: `This server speaks tus ${TUS_VERSION}.` } });
      return;
    }
    const userId = currentUser(req).userId;
    req.headers[USER_HEADER] = userId;
    const id = req.path.replace(/^\/tus\/?/, '');
    if (id && (await tus.ownerOf(id)) !== userId) throw notFound();
    if (id && req.method === 'HEAD') await tus.linkIfComplete(id, userId);
    // @tus/server takes the upload id from the end of the whole URL, query included ("?x=/<id>"): it sees
    // only the path whose id was checked above
    req.url = req.originalUrl.split('?')[0]!;
    if (req.method === 'PATCH') checkPatchHeaders(req);
    // a PATCH, or a creation carrying its first bytes (creation-with-upload)
    const carriesBytes = req.method === 'PATCH' || (req.method === 'POST' && req.get('content-type') === OCTETS);
    const checksum = carriesBytes ? req.get('upload-checksum') : undefined;
    if (checksum === undefined) {
      await sendTusAnswer(res, await tus.server.handleWeb(tusRequest(req, res)));
      return;
    }
    await writeWithChecksum(tus, temp, id, req, res, checksum);
  });
  return router;
}

const TUS_METHODS = ['OPTIONS', 'HEAD', 'POST', 'PATCH', 'DELETE'];
const OCTETS = 'application/offset+octet-stream';
const TUS_VERSION = '1.0.0';

/**
 * tus 1.0: X-HTTP-Method-Override, when present, is the request's method, for clients that cannot send
 * PATCH or DELETE (tus-js-client's and Uppy's `overridePatchMethod`). @tus/server 2 ignores it, and took
 * such a PATCH for a creation (400); every check below reads the method it names.
 */
function applyMethodOverride(req: Request): void {
  const override = req.get('x-http-method-override');
  if (override !== undefined) req.method = override.trim().toUpperCase();
}

/** What @tus/server answers with 403 (a status our clients read as "not yours"): a 400 here instead. */
function checkPatchHeaders(req: Request): void {
  if (!/^\d+$/.test(req.get('upload-offset') ?? '')) throw new AppError('invalid_input', 'PATCH needs Upload-Offset: the offset it writes at.');
  if (req.get('content-type') !== OCTETS) {
    throw new AppError('invalid_input', 'PATCH needs Content-Type: application/offset+octet-stream.');
  }
}

/**
 * srvx's view of the request, whose body (read by @tus/server only for a PATCH it accepts) hands on
 * the request's own pieces. Readable.toWeb copies every piece, to detach it from a buffer pool that
 * request bodies do not come from: that copy was a fifth of the main thread's time in a 1 GiB tus upload.
 */
function tusRequest(req: Request, res: Response): globalThis.Request {
  const request = new NodeRequest({ req, res });
  if (req.method !== 'PATCH') return request;
  let body: ReadableStream<Uint8Array> | undefined;
  Object.defineProperty(request, 'body', { get: () => (body ??= piecesAsWebStream(req)) });
  return request;
}

/** Up to this much of a body waits in its web stream before the socket is paused. */
const BODY_HIGH_WATER_MARK = 1024 * 1024;

/** `source` as a web stream of its pieces as they arrive, uncopied, with backpressure and its errors. */
function piecesAsWebStream(source: Readable): ReadableStream<Uint8Array> {
  let open = true;
  return new ReadableStream<Uint8Array>(
    {
      start(controller) {
        source.on('data', (piece: Buffer) => {
          if (!open) return;
          controller.enqueue(piece);
          if ((controller.desiredSize ?? 1) <= 0) source.pause();
        });
        finished(source, { writable: false }, (error) => {
          if (!open) return;
          open = false;
          if (error) controller.error(error);
          else controller.close();
        });
      },
      pull() {
        source.resume();
      },
      cancel(reason) {
        open = false;
        source.destroy(reason instanceof Error ? reason : undefined);
      },
    },
    { highWaterMark: BODY_HIGH_WATER_MARK, size: (piece) => piece.byteLength },
  );
}

/** The error codes of tus's own refusals, by status. */
const TUS_ERROR_CODES: Record<number, string> = {
  400: 'invalid_input', 404: 'not_found', 409: 'upload_state', 410: 'not_found', 412: 'invalid_input',
  413: 'payload_too_large', 415: 'unsupported_media_type', 460: 'checksum_mismatch', 501: 'not_implemented',
};

/**
 * Sends @tus/server's answer. Its own refusals are plain text; every filestore error leaves as JSON
 * {error: {code, message}} (our hooks' refusals already are), with tus's status and headers.
 */
async function sendTusAnswer(res: Response, answer: globalThis.Response): Promise<void> {
  if (answer.status < 400) {
    // HEAD shows the metadata kept with the upload: the client's own, not our owner bookkeeping
    const metadata = answer.headers.get('upload-metadata');
    if (metadata !== null) {
      const shown = clientMetadata(metadata);
      answer.headers.set('upload-metadata', shown.metadata);
      if (shown.fileId) answer.headers.set(FILE_ID_HEADER, shown.fileId);
    }
    return sendNodeResponse(res, answer);
  }
  const text = (await answer.text()).trim();
  answer.headers.forEach((value, name) => {
    if (!/^content-(type|length)$/i.test(name)) res.setHeader(name, value);
  });
  if (text.startsWith('{')) {
    // MariaDB or Redis out of reach (TusEndpoint's refusal): the client may retry, as on every other route
    if (answer.status === 503) res.setHeader('Retry-After', SERVICE_RETRY_AFTER_SECONDS);
    res.status(answer.status).type('application/json').send(text);
    return;
  }
  const hidden = answer.status >= 500 && answer.status !== 501;
  res.status(hidden ? 500 : answer.status).json({
    error: hidden ? { code: 'internal', message: ERRORS.internal.message } : { code: TUS_ERROR_CODES[answer.status] ?? 'invalid_input', message: text },
  });
}

const SHA1_BASE64 = /^[A-Za-z0-9+/]{27}=$/;

async function writeWithChecksum(tus: TusEndpoint, temp: TempFiles, id: string, req: Request, res: Response, header: string): Promise<void> {
  const [algorithm, digest, extra] = header.trim().split(/\s+/);
  // checked before the body is read: a digest that is not 20 bytes in base64 can match no body
  if (algorithm !== 'sha1' || !digest || !SHA1_BASE64.test(digest) || extra !== undefined) {
    res.status(400).json({ error: { code: 'invalid_input', message: 'Upload-Checksum must be "sha1 <base64 digest>"' } });
    return;
  }
  // The body is staged whole before @tus/server sees it, so what @tus/server would refuse is refused
  // here first, before it takes any disk: a wrong offset, a body longer than the upload has room for.
  const refuse = (code: 'upload_state' | 'payload_too_large', message: string) => new AppError(code, message);
  let room: number;
  if (req.method === 'PATCH') {
    const progress = await tus.progressOf(id);
    if (Number(req.get('upload-offset')) !== progress.offset) throw refuse('upload_state', `Upload-Offset is not the upload's offset (${progress.offset}).`);
    room = progress.room;
  } else {
    const length = req.get('upload-length');
    room = length !== undefined && /^\d+$/.test(length) ? Math.min(Number(length), tus.maxSize) : tus.maxSize;
  }
  const tooLong = () => refuse('payload_too_large', `The body is longer than the ${room} bytes the upload still takes.`);
  if (Number(req.get('content-length') ?? 0) > room) throw tooLong();
  let received = 0;
  const staged = await temp.write(req, (count) => {
    received += count;
    if (received > room) throw tooLong();
  });
  try {
    if (Buffer.from(digest, 'base64').toString('hex') !== staged.sha1) {
      res.status(CHECKSUM_MISMATCH).json({ error: { code: 'checksum_mismatch', message: 'The body does not match Upload-Checksum.' } });
      return;
    }
    const headers = new Headers();
    for (const [name, value] of Object.entries(req.headers)) if (typeof value === 'string') headers.set(name, value);
    headers.set('content-length', String(staged.size));
    const body = Readable.toWeb(fs.createReadStream(staged.path)) as ReadableStream;
    // @tus/server reads the path only (a creation's Location is relative): a malformed Host would make no URL
    const request = new Request(`http://localhost${req.url}`, { method: req.method, headers, body, duplex: 'half' } as RequestInit);
    await sendTusAnswer(res, await tus.server.handleWeb(request));
  } finally {
    await temp.discard(staged.path);
  }
}
