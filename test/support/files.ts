import { createHash } from 'node:crypto';
import fsp from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import type { RunningApp } from './app.js';
import { ApiClient } from './client.js';

export const sha1 = (bytes: Buffer | string): string => createHash('sha1').update(bytes).digest('hex');
export const EMPTY_SHA1 = 'da39a3ee5e6b4b0d3255bfef95601890afd80709';

/** A signed-up client of its own: every test that needs isolation makes a fresh user. */
export async function newUser(app: RunningApp): Promise<ApiClient & { userId: string }> {
  const client = new ApiClient(app.baseUrl);
  const { userId } = await client.signUp();
  return Object.assign(client, { userId });
}

export interface RawPart {
  /**
   * The whole Content-Disposition value, sent byte for byte: a string as UTF-8 (control characters
   * included), a Buffer as it is (bytes that are not UTF-8).
   */
  disposition: string | Buffer;
  contentType?: string;
  body: Buffer | string;
}

/**
 * A multipart/form-data body built by hand, so file names reach the server exactly as written
 * (FormData would percent-escape quotes and newlines, and nothing would let a client send ".." or NUL).
 */
export function rawMultipart(parts: RawPart[]): { body: Buffer; headers: Record<string, string> } {
  const boundary = `----filestore-test-${Math.random().toString(36).slice(2)}`;
  const chunks: Buffer[] = [];
  for (const part of parts) {
    let rest = '\r\n';
    if (part.contentType) rest += `Content-Type: ${part.contentType}\r\n`;
    chunks.push(Buffer.from(`--${boundary}\r\nContent-Disposition: `), Buffer.from(part.disposition), Buffer.from(rest + '\r\n'));
    chunks.push(Buffer.from(part.body), Buffer.from('\r\n'));
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(chunks), headers: { 'content-type': `multipart/form-data; boundary=${boundary}` } };
}

/** POSTs one file part whose Content-Disposition filename parameter is `filenameParam`, verbatim. */
export function uploadRaw(client: ApiClient, filenameParam: string | Buffer, bytes: Buffer, fields: Record<string, string | Buffer> = {}) {
  const parts: RawPart[] = Object.entries(fields).map(([name, value]) => ({ disposition: `form-data; name="${name}"`, body: value }));
  parts.push({ disposition: Buffer.concat([Buffer.from('form-data; name="file"; '), Buffer.from(filenameParam)]), contentType: 'application/octet-stream', body: bytes });
  const { body, headers } = rawMultipart(parts);
  return client.request('POST', '/api/files', { body: new Uint8Array(body), headers });
}

/** Every regular file below `dir` (relative paths), or [] when `dir` does not exist. */
export async function filesUnder(dir: string): Promise<string[]> {
  const entries = await fsp.readdir(dir, { recursive: true, withFileTypes: true }).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return [];
    throw error;
  });
  return entries.filter((entry) => entry.isFile()).map((entry) => path.relative(dir, path.join(entry.parentPath, entry.name)));
}

export const blobFiles = (app: RunningApp) => filesUnder(path.join(app.dataDir, 'blobs'));
export const tempFiles = (app: RunningApp) => filesUnder(path.join(app.dataDir, 'tmp'));

/** The JSON error envelope every 4xx answers with. */
export function expectErrorBody(json: unknown): { code: string; message: string } {
  const error = (json as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
  if (!error || typeof error.code !== 'string' || typeof error.message !== 'string') {
    throw new Error(`expected {error:{code,message}}, got ${JSON.stringify(json)}`);
  }
  return error as { code: string; message: string };
}

/** The decoded RFC 5987 `filename*` of a Content-Disposition header. */
export function filenameStar(disposition: string | null): string | undefined {
  const match = /filename\*\s*=\s*UTF-8''([^;\s]+)/i.exec(disposition ?? '');
  return match ? decodeURIComponent(match[1]!) : undefined;
}

/**
 * A GET through node:http with exactly the given headers. fetch() cannot send a plain conditional
 * request: with If-None-Match it adds "Cache-Control: no-cache", which express's req.fresh treats as an
 * end-to-end reload (always 200). Browsers revalidating their cache and curl send no such header.
 */
export function plainGet(baseUrl: string, path: string, headers: Record<string, string>) {
  return new Promise<{ status: number; headers: http.IncomingHttpHeaders; bytes: Buffer }>((resolve, reject) => {
    const req = http.request(new URL(path, baseUrl), { method: 'GET', headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, bytes: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}
