import fs from 'node:fs';
import { Readable } from 'node:stream';
import { Router, type Request, type Response } from 'express';
import { currentUser } from '../auth/auth.middleware.js';
import { notFound } from '../errors.js';
import type { TempFiles } from '../storage/temp-file.js';
import { USER_HEADER, type TusEndpoint } from '../upload/tus-endpoint.js';

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
      await tus.server.handle(req, res);
      return;
    }
    await patchWithChecksum(tus, temp, req, res, checksum);
  });
  return router;
}

async function patchWithChecksum(tus: TusEndpoint, temp: TempFiles, req: Request, res: Response, header: string): Promise<void> {
  const [algorithm, digest, extra] = header.trim().split(/\s+/);
  if (algorithm !== 'sha1' || !digest || extra !== undefined) {
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
    const response = await tus.server.handleWeb(request);
    res.status(response.status);
    response.headers.forEach((value, name) => res.setHeader(name, value));
    res.end(Buffer.from(await response.arrayBuffer()));
  } finally {
    await temp.discard(staged.path);
  }
}

