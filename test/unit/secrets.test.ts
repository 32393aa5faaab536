import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { loadSigningKey } from '../../src/auth/secrets.js';

let dataDir: string;
beforeEach(async () => {
  dataDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'filestore-secrets-'));
});
afterEach(async () => {
  await fsp.rm(dataDir, { recursive: true, force: true });
});

const text = (key: Uint8Array) => new TextDecoder().decode(key);
const KEY = 'a-key-of-at-least-32-characters-in-use';
/** What a start killed between writing its key and linking it leaves (createOnce's temporary name). */
const LEFTOVER = 'jwt-secret.4194301.0123456789ab';

describe('the generated signing key in DATA_DIR/jwt-secret', () => {
  it('is created once, readable by its owner only, and read back on the next start', async () => {
    const first = await loadSigningKey(dataDir, undefined);
    expect(text(first).length).toBeGreaterThanOrEqual(32);
    expect((await fsp.stat(path.join(dataDir, 'jwt-secret'))).mode & 0o777).toBe(0o600);
    expect(text(await loadSigningKey(dataDir, undefined))).toBe(text(first));
    expect(await fsp.readdir(dataDir)).toEqual(['jwt-secret']);
  });

  it('processes starting at once over one DATA_DIR, with a leftover temporary file, all get the same, non-empty key', async () => {
    await fsp.writeFile(path.join(dataDir, LEFTOVER), 'a-key-no-one-ever-used-0123456789abcdef', { mode: 0o600 });
    const keys = await Promise.all(Array.from({ length: 20 }, () => loadSigningKey(dataDir, undefined)));
    expect(new Set(keys.map(text)).size).toBe(1);
    expect(text(keys[0]!).length).toBeGreaterThanOrEqual(32);
    expect(await fsp.readdir(dataDir)).toEqual(['jwt-secret']);
  });

  it('a temporary file left by a start killed before its link is removed on the next start; the key in use stays', async () => {
    await fsp.writeFile(path.join(dataDir, 'jwt-secret'), KEY, { mode: 0o600 });
    await fsp.writeFile(path.join(dataDir, LEFTOVER), 'a-key-no-one-ever-used-0123456789abcdef', { mode: 0o600 });
    expect(text(await loadSigningKey(dataDir, undefined))).toBe(KEY);
    expect(await fsp.readdir(dataDir)).toEqual(['jwt-secret']);
  });

  it('a first start killed before its link leaves a temporary file; the next start removes it and creates the key', async () => {
    await fsp.writeFile(path.join(dataDir, LEFTOVER), '', { mode: 0o600 });
    const key = await loadSigningKey(dataDir, undefined);
    expect(text(key).length).toBeGreaterThanOrEqual(32);
    expect(await fsp.readdir(dataDir)).toEqual(['jwt-secret']);
    expect(await fsp.readFile(path.join(dataDir, 'jwt-secret'), 'utf8')).toBe(text(key));
  });

  it('a start whose temporary file is removed before its link (by a start at the same time, removing leftovers) writes another', async () => {
    let removed: string | undefined;
    const watcher = fs.watch(dataDir, (_event, name) => {
      if (removed !== undefined || !name?.startsWith('jwt-secret.')) return;
      const file = path.join(dataDir, name);
      // gone already: the start got past its link first, and `removed` stays undefined
      if (!fs.existsSync(file)) return;
      removed = fs.readFileSync(file, 'utf8');
      fs.rmSync(file);
    });
    try {
      const key = text(await loadSigningKey(dataDir, undefined));
      expect(removed).toBeDefined();
      // the removed file's key was never linked: the start went on with another
      expect(key).not.toBe(removed);
      expect(key.length).toBeGreaterThanOrEqual(32);
      expect(await fsp.readFile(path.join(dataDir, 'jwt-secret'), 'utf8')).toBe(key);
      expect(await fsp.readdir(dataDir)).toEqual(['jwt-secret']);
    } finally {
      watcher.close();
    }
  });

  it('a start that finds its key only reads it: it writes no temporary key', async () => {
    const first = text(await loadSigningKey(dataDir, undefined));
    const seen: string[] = [];
    const watcher = fs.watch(dataDir, (_event, name) => void (name && seen.push(name)));
    try {
      expect(text(await loadSigningKey(dataDir, undefined))).toBe(first);
      // events come in order: once the marker's is seen, a temporary key's would have been
      await fsp.writeFile(path.join(dataDir, 'marker'), '');
      await vi.waitFor(() => expect(seen).toContain('marker'));
      expect(seen.filter((name) => name.startsWith('jwt-secret.'))).toEqual([]);
    } finally {
      watcher.close();
    }
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
