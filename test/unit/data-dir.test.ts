import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pino, { type Logger } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { prepareDataDir } from '../../src/storage/data-dir.js';
import { openServices } from '../../src/wiring.js';

const scratch: string[] = [];
afterEach(async () => {
  for (const dir of scratch.splice(0)) await fsp.rm(dir, { recursive: true, force: true });
});

async function scratchDir(): Promise<string> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'filestore-data-dir-'));
  scratch.push(dir);
  return dir;
}

const modeOf = (file: string) => fs.statSync(file).mode & 0o777;

describe('DATA_DIR permissions', () => {
  it('creates a missing DATA_DIR that only its owner can enter, so stored files, the SQLite file and the JWT key stay private', async () => {
    const dataDir = path.join(await scratchDir(), 'data');
    const previous = process.umask(0o022);
    try {
      const services = await openServices(loadConfig({ DATA_DIR: dataDir, LOG_LEVEL: 'silent' }), pino({ level: 'silent' }));
      await services.close();
    } finally {
      process.umask(previous);
    }
    expect(modeOf(dataDir)).toBe(0o700);
    expect(fs.existsSync(path.join(dataDir, 'filestore.sqlite'))).toBe(true);
  });

  it('leaves an existing DATA_DIR as the operator set it, warning when other accounts can enter it', async () => {
    const open = path.join(await scratchDir(), 'open');
    const closed = path.join(await scratchDir(), 'closed');
    fs.mkdirSync(open, { mode: 0o755 });
    fs.chmodSync(open, 0o755);
    fs.mkdirSync(closed, { mode: 0o700 });
    const warnings: unknown[] = [];
    const logger = { warn: (fields: unknown) => warnings.push(fields) } as unknown as Logger;

    prepareDataDir(open, logger);
    prepareDataDir(closed, logger);

    expect(modeOf(open)).toBe(0o755);
    expect(warnings).toEqual([{ dataDir: open, mode: '755' }]);
  });
});
