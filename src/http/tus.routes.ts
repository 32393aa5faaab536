import fs from 'node:fs';
import { Readable, finished } from 'node:stream';
import { Router, type Request, type Response } from 'express';
import { NodeRequest, sendNodeResponse } from 'srvx/node';
import { currentUser } from '../auth/auth.middleware.js';
import { ERRORS, notFound } from '../errors.js';
import type { TempFiles } from '../storage/temp-file.js';
import { OWNER_METADATA_KEY, USER_HEADER, type TusEndpoint } from '../upload/tus-endpoint.js';

const CHECKSUM_MISMATCH = 460;

/**
 * /api/tus: authentication and ownership in front of @tus/server (another user's upload URL is 404,
 * HEAD included), plus the tus checksum extension, which @tus/server lacks: a PATCH carrying
 * `Upload-Checksum: sha1 <base64>` is staged and verified before a byte of it reaches the upload.
 */
export function tusRoutes(tus: TusEndpoint, temp: TempFiles): Router {
  const router = Router();
  router.all(['/tus', '/tus/{*rest}'], async (req, res) => {
    const userId = currentUser(req).userId;
    req.headers[USER_HEADER] = userId;
    const id = req.path.replace(/^\/tus\/?/, '');
    if (id && (await tus.ownerOf(id)) !== userId) throw notFound();
    req.url = req.originalUrl;
    res.setHeader('Tus-Checksum-Algorithm', 'sha1');
    const checksum = req.method === 'PATCH' ? req.get('upload-checksum') : undefined;
    if (checksum === undefined) {
      await sendTusAnswer(res, await tus.server.handleWeb(tusRequest(req, res)));
      return;
    }
    await patchWithChecksum(tus, temp, req, res, checksum);
  });
  return router;
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

/** An Upload-Metadata value (comma-separated `key base64value` pairs) without the owner's pair. */
function withoutOwner(metadata: string): string {
  return metadata
    .split(',')
    .filter((pair) => pair.trim().split(' ')[0] !== OWNER_METADATA_KEY)
    .join(',');
}

/** The error codes of tus's own refusals, by status. */
const TUS_ERROR_CODES: Record<number, string> = {
  400: 'invalid_input', 403: 'forbidden', 404: 'not_found', 409: 'upload_state', 410: 'not_found', 412: 'invalid_input',
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
    if (metadata !== null) answer.headers.set('upload-metadata', withoutOwner(metadata));
    return sendNodeResponse(res, answer);
  }
  const text = (await answer.text()).trim();
  answer.headers.forEach((value, name) => {
    if (!/^content-(type|length)$/i.test(name)) res.setHeader(name, value);
  });
  if (text.startsWith('{')) {
    res.status(answer.status).type('application/json').send(text);
    return;
  }
  const hidden = answer.status >= 500 && answer.status !== 501;
  res.status(hidden ? 500 : answer.status).json({
    error: hidden ? { code: 'internal', message: ERRORS.internal.message } : { code: TUS_ERROR_CODES[answer.status] ?? 'invalid_input', message: text },
  });
}

const SHA1_BASE64 = /^[A-Za-z0-9+/]{27}=$/;

async function patchWithChecksum(tus: TusEndpoint, temp: TempFiles, req: Request, res: Response, header: string): Promise<void> {
  const [algorithm, digest, extra] = header.trim().split(/\s+/);
  // checked before the body is read: a digest that is not 20 bytes in base64 can match no body
  if (algorithm !== 'sha1' || !digest || !SHA1_BASE64.test(digest) || extra !== undefined) {
    res.status(400).set('Tus-Resumable', '1.0.0').json({ error: { code: 'invalid_input', message: 'Upload-Checksum must be "sha1 <base64 digest>"' } });
    return;
  }
  const staged = await temp.write(req);
  try {
    if (Buffer.from(digest, 'base64').toString('hex') !== staged.sha1) {
      res.status(CHECKSUM_MISMATCH).set('Tus-Resumable', '1.0.0').json({ error: { code: 'checksum_mismatch', message: 'The PATCH body does not match Upload-Checksum.' } });
      return;
    }
    const headers = new Headers();
    for (const [name, value] of Object.entries(req.headers)) if (typeof value === 'string') headers.set(name, value);
    headers.set('content-length', String(staged.size));
    const body = Readable.toWeb(fs.createReadStream(staged.path)) as ReadableStream;
    const request = new Request(`http://${req.headers.host ?? 'localhost'}${req.originalUrl}`, { method: 'PATCH', headers, body, duplex: 'half' } as RequestInit);
    await sendTusAnswer(res, await tus.server.handleWeb(request));
  } finally {
    await temp.discard(staged.path);
  }
}

