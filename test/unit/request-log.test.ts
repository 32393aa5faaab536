import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import express from 'express';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { requestLog } from '../../src/http/request-log.js';

const servers: Server[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) await new Promise((resolve) => server.close(resolve));
});

/** An app with requestLog at `level` whose log lines land in the returned array; /fail logs through req.log. */
async function appLoggingAt(level: string) {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  const app = express();
  app.use(requestLog(logger));
  app.get('/ok', (_req, res) => void res.status(204).end());
  app.get('/fail', (req, res) => {
    req.log?.error('it failed');
    res.status(500).end();
  });
  const server = app.listen(0, '127.0.0.1');
  servers.push(server);
  await new Promise((resolve) => server.once('listening', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { lines, get: (path: string, headers: Record<string, string> = {}) => fetch(`${base}${path}`, { headers }) };
}

describe('request log', () => {
  it("answers with the client's X-Request-Id when it is well formed, else with a new one", async () => {
    const { get } = await appLoggingAt('info');
    expect((await get('/ok', { 'x-request-id': 'trace-42.a_b' })).headers.get('x-request-id')).toBe('trace-42.a_b');
    const replaced = (await get('/ok', { 'x-request-id': 'no spaces\tor tabs' })).headers.get('x-request-id');
    expect(replaced).toMatch(/^[0-9a-f-]{36}$/);
    expect((await get('/ok')).headers.get('x-request-id')).not.toBe(replaced);
  });

  it('logs one line per finished request at info, carrying the request id; req.log carries it too', async () => {
    const { lines, get } = await appLoggingAt('info');
    await get('/ok', { 'x-request-id': 'first' });
    await get('/fail', { 'x-request-id': 'second' });
    await expect.poll(() => lines.length).toBe(3);
    expect(lines).toEqual([
      expect.objectContaining({ level: 30, reqId: 'first', msg: 'request completed', req: { method: 'GET', url: '/ok' }, res: { statusCode: 204 } }),
      expect.objectContaining({ level: 50, reqId: 'second', msg: 'it failed' }),
      expect.objectContaining({ level: 30, reqId: 'second', msg: 'request completed', res: { statusCode: 500 } }),
    ]);
  });

  it('logs no request lines above level info, and still what is logged through req.log', async () => {
    const { lines, get } = await appLoggingAt('warn');
    await get('/ok');
    await get('/fail', { 'x-request-id': 'third' });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(lines).toEqual([expect.objectContaining({ level: 50, reqId: 'third', msg: 'it failed' })]);
  });
});
