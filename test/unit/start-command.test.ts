import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const read = (file: string) => fs.readFileSync(path.join(ROOT, file), 'utf8');

// The API server's node flags bound its memory (README, Configuration): a start command that drops
// them runs a server whose peak RSS during a large upload is about 15 MiB higher.
describe('the API server start command', () => {
  const start: string = JSON.parse(read('package.json')).scripts.start;
  const flags = start.split(' ').filter((word) => word.startsWith('--'));

  it('npm start runs dist/src/main.js with a small young generation', () => {
    expect(start).toMatch(/^node .*dist\/src\/main\.js$/);
    expect(flags).toContain('--max-semi-space-size=2');
  });

  it('the Dockerfile, run-cluster.sh and make run start it with the same flags', () => {
    const dockerCmd = /^CMD (\[.*\])$/m.exec(read('Dockerfile'))?.[1];
    expect(JSON.parse(dockerCmd ?? '[]')).toEqual(['node', ...flags, 'dist/src/main.js']);
    expect(read('scripts/run-cluster.sh')).toContain(`node ${flags.join(' ')} dist/src/main.js`);
    expect(read('Makefile')).toMatch(/^run: build\n\tnpm start/m);
  });
});
