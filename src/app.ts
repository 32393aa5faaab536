import fs from 'node:fs';
import type { Server } from 'node:http';
import path from 'node:path';
import express, { type Express } from 'express';
import { requireAuth } from './auth/auth.middleware.js';
import { privateAuthRoutes, publicAuthRoutes } from './http/auth.routes.js';
import { adminRoutes } from './http/admin.routes.js';
import { errorHandler, notFoundHandler } from './http/error-handler.js';
import { fileRoutes } from './http/files.routes.js';
import { healthRoutes } from './http/health.routes.js';
import { tusPublicRoutes, tusRoutes } from './http/tus.routes.js';
import { uploadRoutes } from './http/uploads.routes.js';
import { refuseBrokenUtf8 } from './http/validate.js';
import { Metrics } from './http/metrics.js';
import { requestLog } from './http/request-log.js';
import type { Config } from './config.js';
import type { Services } from './wiring.js';

// web/ sits beside src/ in the repository and two levels above dist/src/app.js in a build
const WEB_ROOT = [path.resolve(import.meta.dirname, '..', 'web'), path.resolve(import.meta.dirname, '..', '..', 'web')].find((dir) =>
  fs.existsSync(path.join(dir, 'index.html')),
);

/** The express app for a set of services; listening is the caller's business (main.ts, tests). */
export function buildApp(services: Services, metrics = new Metrics(() => services.jobs.stats())): Express {
  const { config, logger, auth, files, folders, temp, accessTokens, healthChecks, uploads, completion, tus } = services;
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', config.TRUST_PROXY);
  app.use(requestLog(logger));
  app.use(metrics.middleware());
  app.use(healthRoutes(healthChecks, metrics));
  // Chunk bodies are raw bytes whatever their Content-Type: never let the JSON parser take a PUT.
  const json = express.json({
    limit: '64kb',
    type: (req) => req.method !== 'PUT' && /json/i.test(req.headers['content-type'] ?? ''),
    verify: refuseBrokenUtf8,
  });
  app.use(['/api/auth/register', '/api/auth/login', '/api/auth/refresh'], json);
  app.use('/api/auth', publicAuthRoutes(auth));
  app.use('/api', tusPublicRoutes(tus));
  // everything else reads its body only once the token is checked: no 64 KiB parse for an anonymous
  // client, and a missing token is 401 whatever the body
  app.use('/api', requireAuth(accessTokens), json);
  app.use('/api', privateAuthRoutes(auth, files));
  app.use(
    '/api',
    fileRoutes({ files, folders, temp, maxUploadBytes: config.MAX_UPLOAD_BYTES, onUploadedBytes: metrics.countUploadedBytes }),
  );
  app.use('/api', uploadRoutes(uploads, completion, config.MAX_UPLOAD_BYTES, metrics.countUploadedBytes));
  app.use('/api', tusRoutes(tus, temp));
  app.use('/api', adminRoutes(services.admin));
  app.use('/api', notFoundHandler);
  if (WEB_ROOT) app.use(express.static(WEB_ROOT, { index: 'index.html' }));
  app.use(notFoundHandler);
  app.use(errorHandler);
  return app;
}

/**
 * Uploads of many GiB take minutes: no whole-request timeout. A connection that carries no byte either
 * way for IDLE_TIMEOUT_SECONDS is closed instead: a stalled request body held its socket, and the 1 MiB
 * buffer its upload had taken, for as long as the client liked, and anyone could open many. (Not
 * nginx's 60 s: a finishing tus request may wait 30 s for its lock and then hash up to 64 GiB, ~50 s,
 * before it answers.)
 */
export function applyTimeouts(server: Server, config: Config): void {
  server.requestTimeout = 0;
  server.headersTimeout = 60_000;
  server.timeout = config.IDLE_TIMEOUT_SECONDS * 1000;
  // longer than clients keep idle sockets (fetch: ~5 s), so a request never lands on a closing one
  server.keepAliveTimeout = 65_000;
}
