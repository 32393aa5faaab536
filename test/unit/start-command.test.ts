import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const SCRIPT = path.join(ROOT, 'scripts', 'start-api.sh');
const read = (file: string) => fs.readFileSync(path.join(ROOT, file), 'utf8');

/** The command line start-api.sh would run, printed by `echo` in node's place. */
function commandLine(profile: string | undefined, ...args: string[]): string {
  const env: NodeJS.ProcessEnv = { ...process.env, NODE: 'echo' };
  if (profile) env.FILESTORE_PROFILE = profile;
  else delete env.FILESTORE_PROFILE;
  return execFileSync(SCRIPT, args, { env, encoding: 'utf8' }).trim();
}

// The young generation's size is a measured trade per profile (see the script): a start command that
// bypasses the script runs the embedded server with ~15 MiB more peak RSS, or the cluster one slower;
// without the old-generation floor, a server that idled ~30 s spends twice the CPU on each upload.
describe('the API server start command', () => {
  it('gives the embedded profile (the default) a 2 MiB young generation and a 256 MB old-generation floor, and passes extra node options on', () => {
    expect(commandLine(undefined)).toBe(`--max-semi-space-size=2 --initial-old-space-size=256 ${ROOT}/scripts/../dist/src/main.js`);
    expect(commandLine('embedded', '--cpu-prof')).toBe(`--max-semi-space-size=2 --initial-old-space-size=256 --cpu-prof ${ROOT}/scripts/../dist/src/main.js`);
  });

  it("leaves the cluster profile V8's default young generation, with the same old-generation floor", () => {
    expect(commandLine('cluster')).toBe(`--initial-old-space-size=256 ${ROOT}/scripts/../dist/src/main.js`);
  });

  it('is what npm start, make run, run-cluster.sh and the Dockerfile run', () => {
    expect(JSON.parse(read('package.json')).scripts.start).toBe('scripts/start-api.sh');
    expect(read('Makefile')).toMatch(/^run: build\n\tnpm start/m);
    expect(read('scripts/run-cluster.sh')).toMatch(/^scripts\/start-api\.sh /m);
    expect(JSON.parse(/^CMD (\[.*\])$/m.exec(read('Dockerfile'))?.[1] ?? '[]')).toEqual(['scripts/start-api.sh']);
    expect(read('Dockerfile')).toContain('COPY scripts/start-api.sh ./scripts/');
  });
});
