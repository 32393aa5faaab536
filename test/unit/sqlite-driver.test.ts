import { createRequire } from 'node:module';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { sqliteModuleFor, sqliteModulePath } from '../../src/db/sqlite-driver.js';

const require = createRequire(import.meta.url);

/** The version of the better-sqlite3 package `modulePath` (its main file) belongs to. */
function versionOf(modulePath: string): string {
  for (let dir = path.dirname(modulePath); dir !== path.dirname(dir); dir = path.dirname(dir)) {
    try {
      return (require(path.join(dir, 'package.json')) as { version: string }).version;
    } catch {
      // not the package's own folder yet
    }
  }
  throw new Error(`no package.json above ${modulePath}`);
}

describe('the SQLite driver build', () => {
  it('is better-sqlite3 12 (ObjectWrap) before Node 22, and 13 (Node-API) from Node 22 on, where 12 aborts on Node 24.19+', () => {
    expect(sqliteModuleFor('20.20.2')).toBe('better-sqlite3');
    expect(sqliteModuleFor('22.0.0')).toBe('better-sqlite3-napi');
    expect(sqliteModuleFor('24.21.0')).toBe('better-sqlite3-napi');
  });

  it('that this Node loads is the one installed for it', () => {
    const major = Number(process.versions.node.split('.')[0]);
    expect(versionOf(sqliteModulePath).split('.')[0]).toBe(major >= 22 ? '13' : '12');
  });
});
