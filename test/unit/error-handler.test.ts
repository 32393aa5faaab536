import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requestRedisOptions } from '../../src/cache/redis-client.js';
import { openMysql } from '../../src/db/knex.js';
import { toAppError } from '../../src/http/error-handler.js';

/**
 * The errors come from the real clients (a server that accepts and never answers, a client not yet
 * connected), so a client release that renames them fails here rather than turning outages into 500s.
 */
describe('toAppError: a backing service out of reach is 503 unavailable, a bug stays 500', () => {
  const sockets = new Set<net.Socket>();
  const listen = async (onConnection: (socket: net.Socket) => void) => {
    const server = net.createServer((socket) => (sockets.add(socket), onConnection(socket)));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return server;
  };
  let silent: net.Server;
  let muteRedis: net.Server;
  beforeAll(async () => {
    silent = await listen(() => undefined);
    // answers ioredis's connection handshake (HELLO refused: RESP2; CLIENT SETINFO) and nothing after it
    muteRedis = await listen((socket) =>
      socket.once('data', (bytes) => socket.write(`-NOPROTO\r\n${'+OK\r\n'.repeat(bytes.toString().split('*').length - 2)}`)),
    );
  });
  afterAll(async () => {
    for (const socket of sockets) socket.destroy();
    await Promise.all([silent, muteRedis].map((server) => new Promise((resolve) => server.close(resolve))));
  });
  const portOf = (server: net.Server) => (server.address() as AddressInfo).port;

  const expectUnavailable = (error: unknown) => {
    const mapped = toAppError(error);
    expect(mapped.code, String(error)).toBe('unavailable');
    expect(mapped.status).toBe(503);
    expect(Number(mapped.headers['Retry-After'])).toBeGreaterThan(0);
  };

  it('Redis: a command that gets no answer in time, or is sent while not connected', async () => {
    const hung = new Redis({ port: portOf(muteRedis), host: '127.0.0.1', ...requestRedisOptions(100), enableReadyCheck: false });
    const offline = new Redis({ port: portOf(muteRedis), host: '127.0.0.1', ...requestRedisOptions(100), lazyConnect: true });
    try {
      await new Promise((resolve) => hung.once('ready', resolve));
      expectUnavailable(await hung.get('key').catch((error: unknown) => error));
      expectUnavailable(await offline.get('key').catch((error: unknown) => error));
      expectUnavailable(await offline.multi().get('key').exec().catch((error: unknown) => error));
    } finally {
      hung.disconnect();
      offline.disconnect();
    }
  });

  it('MariaDB: no handshake in time, a refused connection, a statement timed out', async () => {
    const silentDb = openMysql(`mysql://u:p@127.0.0.1:${portOf(silent)}/db`, { connectTimeoutMs: 100, poolMax: 1 });
    const closedDb = openMysql('mysql://u:p@127.0.0.1:1/db', { connectTimeoutMs: 100, poolMax: 1 });
    try {
      expectUnavailable(await silentDb.raw('select 1').catch((error: unknown) => error));
      expectUnavailable(await closedDb.raw('select 1').catch((error: unknown) => error));
    } finally {
      await Promise.all([silentDb.destroy(), closedDb.destroy()]);
    }
    expectUnavailable(Object.assign(new Error('Query inactivity timeout'), { code: 'PROTOCOL_SEQUENCE_TIMEOUT' }));
  });

  it('anything else is internal', () => {
    expect(toAppError(new Error('boom')).code).toBe('internal');
    expect(toAppError(new TypeError("Cannot read properties of undefined (reading 'id')")).code).toBe('internal');
    expect(toAppError(Object.assign(new Error("Duplicate entry 'x'"), { code: 'ER_DUP_ENTRY' })).code).toBe('internal');
    expect(toAppError(Object.assign(new Error('WRONGTYPE Operation against a key'), { name: 'ReplyError' })).code).toBe('internal');
  });
});
