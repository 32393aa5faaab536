import type { Request, RequestHandler } from 'express';
import { AppError } from '../errors.js';
import type { AccessClaims, AccessTokens } from './access-tokens.js';

declare module 'express-serve-static-core' {
  interface Request {
    user?: AccessClaims;
  }
}

/** Requires a valid `Authorization: Bearer <access token>`; 401 for a missing, expired or forged one. */
export function requireAuth(tokens: AccessTokens): RequestHandler {
  return async (req, _res, next) => {
    const match = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '');
    if (!match) throw new AppError('unauthorized', 'Send Authorization: Bearer <access token>.');
    req.user = await tokens.verify(match[1]!);
    next();
  };
}

/** The authenticated user of a request that passed requireAuth. */
export function currentUser(req: Request): AccessClaims {
  if (!req.user) throw new AppError('unauthorized');
  return req.user;
}
