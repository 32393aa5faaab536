import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadSigningKey } from '../../src/auth/secrets.js';

let dataDir: string;
beforeEach(async () => {
  dataDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'filestore-secrets-'));
});
afterEach(async () => {
  await fsp.rm(dataDir, { recursive: true, force: true });
});

const text = (key: Uint8Array) => new TextDecoder().decode(key);

describe('the generated signing key in DATA_DIR/jwt-secret', () => {
  it('is created once, readable by its owner only, and read back on the next start', async () => {
    const first = await loadSigningKey(dataDir, undefined);
    expect(text(first).length).toBeGreaterThanOrEqual(32);
    expect((await fsp.stat(path.join(dataDir, 'jwt-secret'))).mode & 0o777).toBe(0o600);
    expect(text(await loadSigningKey(dataDir, undefined))).toBe(text(first));
    expect(await fsp.readdir(dataDir)).toEqual(['jwt-secret']);
  });

  it('processes starting at once over one DATA_DIR all get the same, non-empty key', async () => {
    const keys = await Promise.all(Array.from({ length: 20 }, () => loadSigningKey(dataDir, undefined)));
    expect(new Set(keys.map(text)).size).toBe(1);
    expect(text(keys[0]!).length).toBeGreaterThanOrEqual(32);
    expect(await fsp.readdir(dataDir)).toEqual(['jwt-secret']);
  });

  it.each([
    ['empty', ''],
    ['only whitespace', ' \n'],
    ['shorter than 32 characters', 'short-key'],
  ])('a jwt-secret that is %s stops the start with an error naming the file', async (_label, content) => {
    await fsp.writeFile(path.join(dataDir, 'jwt-secret'), content, { mode: 0o600 });
    await expect(loadSigningKey(dataDir, undefined)).rejects.toThrow(path.join(dataDir, 'jwt-secret'));
  });

  it('JWT_SECRET, when set, is the key and no file is written', async () => {
    const configured = 'a-configured-key-of-at-least-32-chars';
    expect(text(await loadSigningKey(dataDir, configured))).toBe(configured);
    expect(await fsp.readdir(dataDir)).toEqual([]);
  });
});
