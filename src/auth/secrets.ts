import { randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';

/**
 * The JWT signing key: JWT_SECRET when set (several API processes must share it), otherwise a random key
 * generated on first start and kept in DATA_DIR, so tokens survive restarts.
 */
export async function loadSigningKey(dataDir: string, configured: string | undefined): Promise<Uint8Array> {
  if (configured) return new TextEncoder().encode(configured);
  const file = path.join(dataDir, 'jwt-secret');
  await fsp.mkdir(dataDir, { recursive: true });
  try {
    await fsp.writeFile(file, randomBytes(32).toString('base64url'), { flag: 'wx', mode: 0o600 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
  return new TextEncoder().encode((await fsp.readFile(file, 'utf8')).trim());
}
