import { Router } from 'express';
import { z } from 'zod';
import { currentUser } from '../auth/auth.middleware.js';
import { AppError } from '../errors.js';
import { assertValidName, normalizeFolder } from '../files/names.js';
import type { UploadCompletion } from '../upload/upload-completion.js';
import type { UploadService } from '../upload/upload.service.js';
import { parseInput } from './validate.js';

const sha1 = z.string().regex(/^[0-9a-f]{40}$/, 'must be 40 lowercase hex characters');
// built once: a zod schema costs more to build than to run
const declareBody = z.object({ sha1 });
const chunkSha1Header = z.object({ 'X-Chunk-Sha1': sha1 });
const proofBody = z.object({ proof: z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex characters') });
const MiB = 1024 * 1024;

export function uploadRoutes(
  uploads: UploadService,
  completion: UploadCompletion,
  maxUploadBytes: number,
  onUploadedBytes: (count: number) => void,
): Router {
  const createBody = z.object({
    name: z.string().max(1024).transform(assertValidName),
    folder: z.string().max(4096).default('/').transform(normalizeFolder),
    size: z.number().int().min(0),
    sha1: sha1.optional(),
    chunkSize: z.number().int().min(256 * 1024, 'must be at least 256 KiB').max(64 * MiB, 'must be at most 64 MiB').optional(),
  });
  const router = Router();

  router.post('/uploads', async (req, res) => {
    const request = parseInput(createBody, req.body);
    // a well-formed size the server will not take: 413, as POST /api/files and tus answer it
    if (request.size > maxUploadBytes) throw new AppError('payload_too_large', `size: must be at most ${maxUploadBytes} bytes`);
    const answer = await uploads.create(currentUser(req).userId, request);
    res.status(answer.status).json(answer.body);
  });

  /**
   * `input` parsed by `schema`; bad input is answered 400 only once the session turns out to be the
   * user's, so an unknown, foreign or malformed id is 404 whatever came with it (ids reveal nothing).
   * Good input costs no extra look-up: the service finds the session anyway.
   */
  const parseFor = async <S extends z.ZodType>(userId: string, id: string, schema: S, input: unknown): Promise<z.infer<S>> => {
    const parsed = schema.safeParse(input);
    if (parsed.success) return parsed.data;
    await uploads.find(userId, id);
    return parseInput(schema, input);
  };

  router.patch('/uploads/:id', async (req, res) => {
    const userId = currentUser(req).userId;
    const body = await parseFor(userId, req.params.id, declareBody, req.body);
    const answer = await uploads.declareSha1(userId, req.params.id, body.sha1);
    res.status(answer.status).json(answer.body);
  });

  router.get('/uploads/:id', async (req, res) => {
    res.json(await uploads.describe(currentUser(req).userId, req.params.id));
  });

  router.put('/uploads/:id/chunks/:index', async (req, res) => {
    const userId = currentUser(req).userId;
    const header = req.get('x-chunk-sha1');
    const chunkSha1 =
      header === undefined ? undefined : (await parseFor(userId, req.params.id, chunkSha1Header, { 'X-Chunk-Sha1': header.toLowerCase() }))['X-Chunk-Sha1'];
    const index = /^\d{1,9}$/.test(req.params.index) ? Number(req.params.index) : -1;
    if (index < 0) {
      await uploads.find(userId, req.params.id);
      throw new AppError('invalid_input', 'chunk index must be a non-negative integer');
    }
    onUploadedBytes(await uploads.receiveChunk(userId, req.params.id, index, req, chunkSha1));
    res.status(204).end();
  });

  router.post('/uploads/:id/complete', async (req, res) => {
    const answer = await completion.complete(currentUser(req).userId, req.params.id);
    if (answer.status === 202) res.status(202).json({ state: answer.state });
    else res.status(answer.status).json(answer.file);
  });

  router.post('/uploads/:id/proof', async (req, res) => {
    const userId = currentUser(req).userId;
    const { proof } = await parseFor(userId, req.params.id, proofBody, req.body);
    const answer = await completion.prove(userId, req.params.id, proof);
    res.status(answer.status).json(answer.file);
  });

  router.delete('/uploads/:id', async (req, res) => {
    await uploads.cancel(currentUser(req).userId, req.params.id);
    res.status(204).end();
  });

  return router;
}
