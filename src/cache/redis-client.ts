import type { Redis, RedisOptions } from 'ioredis';
import type { Logger } from 'pino';

/**
 * Options for the connections requests wait on. A command fails after `commandTimeoutMs` (Redis accepts
 * but does not answer), and at once while the connection is down rather than being queued: a queued or
 * re-sent command would run after its request had already failed (a chunk claim or tus lock taken by no
 * one, blocking that upload for a lease).
 */
export function requestRedisOptions(commandTimeoutMs: number): RedisOptions {
  return { commandTimeout: commandTimeoutMs, enableOfflineQueue: false, autoResendUnfulfilledCommands: false, maxRetriesPerRequest: 2 };
}

/** A connection without an 'error' listener has ioredis print every reconnect failure to the console. */
export function logErrors(redis: Redis, logger: Logger, connection: string): Redis {
  return redis.on('error', (error) => logger.warn({ err: error, connection }, 'redis connection error'));
}

/**
 * Resolves once `redis` is connected, or after `ms` (Redis down at start: requests answer 503 until it is
 * back). Commands fail rather than wait while it connects, so the first requests should find it ready.
 */
export function readyOrAfter(redis: Redis, ms: number): Promise<void> {
  if (redis.status === 'ready') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      redis.off('ready', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    redis.once('ready', done);
  });
}

// ioredis's own messages for these carry no code; they are compared whole.
const UNAVAILABLE_MESSAGES = new Set([
  'Command timed out',
  'Connection is closed.',
  "Stream isn't writeable and enableOfflineQueue options is false",
]);

/** True when a Redis command failed because Redis could not be reached or did not answer in time. */
export function isRedisUnavailable(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  return error.name === 'MaxRetriesPerRequestError' || UNAVAILABLE_MESSAGES.has(error.message);
}
