import fs from 'node:fs';
import fsp from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { chromium, type Browser } from 'playwright-core';

/** Debian's chromium (`apt-get install chromium`): playwright-core brings no browser of its own. */
export const CHROMIUM = '/usr/bin/chromium';

/**
 * Whether Debian's chromium is installed. When it is not: with REQUIRE_SERVICES=1 this throws (CI must
 * not pass by skipping); otherwise it prints one line saying how to install it and returns false.
 */
export function chromiumAvailable(suite: string): boolean {
  try {
    fs.accessSync(CHROMIUM, fs.constants.X_OK);
    return true;
  } catch {
    const line = `${suite}: skipped, ${CHROMIUM} not found; install it with \`apt-get install chromium\``;
    if (process.env.REQUIRE_SERVICES === '1') throw new Error(`${line} (REQUIRE_SERVICES=1, so this fails)`);
    process.stderr.write(line + '\n');
    return false;
  }
}

/** Headless chromium; --no-sandbox because tests run as root, where chromium's sandbox refuses to start. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'], headless: true });
}

export interface StaticSite {
  /** The site's origin, e.g. http://127.0.0.1:41234 (another origin than the app's: another port). */
  origin: string;
  close(): Promise<void>;
}

const CONTENT_TYPES: Record<string, string> = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8' };

/** A plain static HTTP server on its own port, serving `files` (URL path → file on disk) and 404 for the rest. */
export async function serveStatic(files: Record<string, string>): Promise<StaticSite> {
  const server = http.createServer(async (req, res) => {
    const file = files[new URL(req.url ?? '/', 'http://site').pathname];
    if (req.method !== 'GET' || file === undefined) {
      res.writeHead(404).end();
      return;
    }
    const body = await fsp.readFile(file);
    res.writeHead(200, { 'content-type': CONTENT_TYPES[path.extname(file)] ?? 'application/octet-stream', 'cache-control': 'no-store' });
    res.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
