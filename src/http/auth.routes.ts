import { Router } from 'express';
import { z } from 'zod';
import { currentUser } from '../auth/auth.middleware.js';
import type { AuthService } from '../auth/auth.service.js';
import type { FileService } from '../files/file.service.js';
import { parseInput } from './validate.js';

const username = z.string().regex(/^[a-zA-Z0-9_.-]{3,32}$/, 'must be 3–32 characters of a-z, A-Z, 0-9, "_", "." and "-"');
const credentials = z.object({ username, password: z.string().min(8, 'must be at least 8 characters').max(1024) });
// The same username rule at login keeps one throttle counter per account (no "bob " next to "bob").
const loginBody = z.object({ username, password: z.string().min(1).max(1024) });
const refreshBody = z.object({ refreshToken: z.string().min(1).max(512) });

export function publicAuthRoutes(auth: AuthService): Router {
  const router = Router();
  router.post('/register', async (req, res) => {
    const { username, password } = parseInput(credentials, req.body);
    res.status(201).json({ user: await auth.register(username, password, req.ip ?? 'unknown') });
  });
  router.post('/login', async (req, res) => {
    const { username, password } = parseInput(loginBody, req.body);
    res.json(await auth.login(username, password, req.ip ?? 'unknown'));
  });
  router.post('/refresh', async (req, res) => {
    const { refreshToken } = parseInput(refreshBody, req.body);
    res.json(await auth.refresh(refreshToken));
  });
  return router;
}

export function privateAuthRoutes(auth: AuthService, files: FileService): Router {
  const router = Router();
  router.post('/auth/logout', async (req, res) => {
    const { refreshToken } = parseInput(refreshBody, req.body);
    await auth.logout(currentUser(req).userId, refreshToken);
    res.status(204).end();
  });
  router.get('/me', async (req, res) => {
    const user = currentUser(req);
    res.json({ id: user.userId, username: user.username, usedBytes: await files.usedBytes(user.userId) });
  });
  return router;
}
