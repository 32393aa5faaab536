import { randomUUID } from 'node:crypto';
import type { RequestHandler } from 'express';
import type { Logger } from 'pino';

declare module 'express-serve-static-core' {
  interface Request {
    /** A child logger carrying the request's id (requestLog). */
    log?: Logger;
  }
}

const GIVEN_ID = /^[\w.-]{1,64}$/;

/**
 * Request ids and request logs: `X-Request-Id` (the client's when well formed, else a new one) on every
 * answer, `req.log` (a child logger with the id, made only when something logs through it), and one
 * line per finished request at level info. pino-http, which did this before, built a child logger and
 * its serializers for every request whether anything was logged or not: a 404 cost the main thread
 * 160–227 µs with it against 133–146 without (20,000 keep-alive requests, 3 alternating pairs).
 */
export function requestLog(logger: Logger): RequestHandler {
  return (req, res, next) => {
    const given = req.headers['x-request-id'];
    const reqId = typeof given === 'string' && GIVEN_ID.test(given) ? given : randomUUID();
    res.setHeader('X-Request-Id', reqId);
    let child: Logger | undefined;
    const log = () => (child ??= logger.child({ reqId }));
    Object.defineProperty(req, 'log', { configurable: true, get: log });
    if (logger.isLevelEnabled('info')) {
      const started = performance.now();
      res.once('close', () => {
        const responseTime = Math.round(performance.now() - started);
        const request = { method: req.method, url: req.originalUrl };
        if (res.writableFinished) log().info({ req: request, res: { statusCode: res.statusCode }, responseTime }, 'request completed');
        else log().warn({ req: request, responseTime }, 'request aborted');
      });
    }
    next();
  };
}
