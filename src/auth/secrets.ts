import { randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { ignoreMissing, namesIn } from '../storage/missing-files.js';

/** As for JWT_SECRET: a shorter HS256 key is guessable, an empty one cannot sign at all. */
const MIN_KEY_CHARS = 32;
/** createOnce's temporary files. */
const TEMPORARY = /^jwt-secret\.\d+\.[0-9a-f]{12}$/;

/**
 * The JWT signing key: JWT_SECRET when set (several API processes must share it), otherwise a random key
 * generated on first start and kept in DATA_DIR, so tokens survive restarts.
 */
export async function loadSigningKey(dataDir: string, configured: string | undefined): Promise<Uint8Array> {
  if (configured) return new TextEncoder().encode(configured);
  const file = path.join(dataDir, 'jwt-secret');
  await fsp.mkdir(dataDir, { recursive: true });
  await removeLeftovers(dataDir);
  // every start after the first only reads the key
  let key = (await fsp.readFile(file, 'utf8').catch(ignoreMissing))?.trim();
  if (key === undefined) {
    await createOnce(file);
    key = (await fsp.readFile(file, 'utf8')).trim();
  }
  // Started anyway, the server answered every login with a 500 (empty key) or signed with a guessable one.
  if (key.length < MIN_KEY_CHARS) {
    throw new Error(`${file} holds no usable key (fewer than ${MIN_KEY_CHARS} characters); remove it to have a new one generated, or set JWT_SECRET`);
  }
  return new TextEncoder().encode(key);
}

/**
 * A start killed between writing its key and linking it left its temporary file behind for good: a secret
 * no one uses, beside the one in use. Every such file goes, a concurrent start's included (createOnce then
 * writes another). No age or pid can tell a live start's file: a live start can take longer than any age
 * chosen, and a pid cannot be checked across containers sharing DATA_DIR (each one's pid 1 looks alive).
 */
async function removeLeftovers(dataDir: string): Promise<void> {
  for (const name of await namesIn(dataDir, TEMPORARY)) await fsp.rm(path.join(dataDir, name), { force: true });
}

/**
 * Writes a new key whole and synced under a temporary name, then links it into place: the link fails if
 * the file exists, so processes starting at once over one DATA_DIR keep the first key, and neither they
 * nor a crash mid-write ever leave an empty or partial jwt-secret (open-then-write could). A temporary
 * file gone before its link was taken for a leftover by a start at the same time: each start removes
 * leftovers once, so writing another ends.
 */
async function createOnce(file: string): Promise<void> {
  for (;;) {
    const temp = `${file}.${process.pid}.${randomBytes(6).toString('hex')}`;
    const handle = await fsp.open(temp, 'wx', 0o600);
    try {
      await handle.writeFile(randomBytes(32).toString('base64url'));
      await handle.sync();
    } finally {
      await handle.close();
    }
    try {
      await fsp.link(temp, file);
      return;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') return;
      if (code !== 'ENOENT') throw error;
    } finally {
      await fsp.rm(temp, { force: true });
    }
  }
}
