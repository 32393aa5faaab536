import { spawn } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';

const REPO_ROOT = path.resolve(import.meta.dirname, '..', '..');

const CLUSTER_ENV = {
  FILESTORE_PROFILE: 'cluster',
  DB_PRIMARY_URL: 'mysql://app:app@127.0.0.1:3316/filestore',
  DB_REPLICA_URL: 'mysql://app:app@127.0.0.1:3317/filestore',
  REDIS_URL: 'redis://127.0.0.1:6379',
  S3_ENDPOINT: 'http://127.0.0.1:7480',
  S3_BUCKET: 'filestore',
  S3_ACCESS_KEY: 'devkey',
  S3_SECRET_KEY: 'devsecret',
};

/** The ConfigError loadConfig throws for `env`, or a failure when it accepts it. */
function configError(env: NodeJS.ProcessEnv): ConfigError {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error(`expected loadConfig to reject ${JSON.stringify(env)}`);
}

describe('loadConfig', () => {
  it('uses the documented defaults for an empty environment', () => {
    const config = loadConfig({});
    expect(config.PORT).toBe(8080);
    expect(config.FILESTORE_PROFILE).toBe('embedded');
    expect(config.HOST).toBe('0.0.0.0');
    expect(config.LOG_LEVEL).toBe('info');
    expect(config.ACCESS_TOKEN_TTL_SECONDS).toBe(900);
    expect(config.LOGIN_MAX_FAILURES).toBe(10);
    expect(config.JWT_SECRET).toBeUndefined();
  });

  it('resolves the default DATA_DIR ./data to an absolute path', () => {
    const config = loadConfig({});
    expect(path.isAbsolute(config.DATA_DIR)).toBe(true);
    expect(config.DATA_DIR).toBe(path.resolve(process.cwd(), 'data'));
  });

  it('resolves a relative DATA_DIR against the working directory and keeps an absolute one', () => {
    expect(loadConfig({ DATA_DIR: 'var/store' }).DATA_DIR).toBe(path.resolve(process.cwd(), 'var/store'));
    expect(loadConfig({ DATA_DIR: '/srv/filestore' }).DATA_DIR).toBe('/srv/filestore');
  });

  it('reads numbers given as strings', () => {
    const config = loadConfig({ PORT: '3000', ACCESS_TOKEN_TTL_SECONDS: '60', LOGIN_MAX_FAILURES: '3' });
    expect(config.PORT).toBe(3000);
    expect(config.ACCESS_TOKEN_TTL_SECONDS).toBe(60);
    expect(config.LOGIN_MAX_FAILURES).toBe(3);
  });

  it('treats an empty variable as unset', () => {
    expect(loadConfig({ PORT: '', FILESTORE_PROFILE: '' })).toMatchObject({ PORT: 8080, FILESTORE_PROFILE: 'embedded' });
  });

  it('ignores variables it does not know', () => {
    expect(loadConfig({ SOMETHING_ELSE: 'x' }) as Record<string, unknown>).not.toHaveProperty('SOMETHING_ELSE');
  });

  it('returns a frozen object', () => {
    expect(Object.isFrozen(loadConfig({}))).toBe(true);
  });

  it('rejects PORT=abc with a ConfigError naming PORT and its value', () => {
    const error = configError({ PORT: 'abc' });
    expect(error.message).toContain('PORT');
    expect(error.message).toContain('"abc"');
  });

  it.each(['-1', '65536', '80.5'])('rejects the out-of-range or fractional PORT=%s, naming PORT', (value) => {
    expect(configError({ PORT: value }).message).toContain('PORT');
  });

  it('rejects an unknown FILESTORE_PROFILE with a ConfigError naming it', () => {
    const error = configError({ FILESTORE_PROFILE: 'galaxy' });
    expect(error.message).toContain('FILESTORE_PROFILE');
    expect(error.message).toContain('galaxy');
  });

  it('rejects a zero or negative ACCESS_TOKEN_TTL_SECONDS, naming it', () => {
    expect(configError({ ACCESS_TOKEN_TTL_SECONDS: '0' }).message).toContain('ACCESS_TOKEN_TTL_SECONDS');
    expect(configError({ ACCESS_TOKEN_TTL_SECONDS: '-5' }).message).toContain('ACCESS_TOKEN_TTL_SECONDS');
  });

  it('throttles password work by defaults no one person reaches: 100 failed logins and 20 registrations per IP, 2 argon2 at once and 32 waiting', () => {
    expect(loadConfig({})).toMatchObject({
      LOGIN_IP_MAX_FAILURES: 100,
      REGISTER_MAX_PER_IP: 20,
      REGISTER_WINDOW_SECONDS: 3600,
      ARGON2_MAX_CONCURRENT: 2,
      ARGON2_MAX_QUEUED: 32,
    });
    const config = loadConfig({ LOGIN_IP_MAX_FAILURES: '5', REGISTER_MAX_PER_IP: '3', ARGON2_MAX_CONCURRENT: '1', ARGON2_MAX_QUEUED: '4' });
    expect([config.LOGIN_IP_MAX_FAILURES, config.REGISTER_MAX_PER_IP, config.ARGON2_MAX_CONCURRENT, config.ARGON2_MAX_QUEUED]).toEqual([5, 3, 1, 4]);
    for (const variable of ['LOGIN_IP_MAX_FAILURES', 'REGISTER_MAX_PER_IP', 'REGISTER_WINDOW_SECONDS', 'ARGON2_MAX_CONCURRENT', 'ARGON2_MAX_QUEUED']) {
      expect(configError({ [variable]: '0' }).message).toContain(variable);
    }
  });

  it('believes X-Forwarded-For from loopback proxies by default, and from a configured list of names, addresses and ranges', () => {
    expect(loadConfig({}).TRUST_PROXY).toEqual(['loopback']);
    expect(loadConfig({ TRUST_PROXY: 'loopback, 10.0.0.0/8,fd00::/8, 192.0.2.7' }).TRUST_PROXY).toEqual(['loopback', '10.0.0.0/8', 'fd00::/8', '192.0.2.7']);
  });

  it('rejects a TRUST_PROXY that would believe any client (true, a hop count) or that is no address, naming it', () => {
    for (const value of ['true', '1', 'everyone', '10.0.0.0/33', '10.0.0.1/8/2', '::1/129']) {
      expect(configError({ TRUST_PROXY: value }).message).toContain('TRUST_PROXY');
    }
  });

  it('rejects a JWT_SECRET shorter than 32 characters, naming it', () => {
    expect(configError({ JWT_SECRET: 'short' }).message).toContain('JWT_SECRET');
  });

  it('rejects an unknown LOG_LEVEL, naming it', () => {
    expect(configError({ LOG_LEVEL: 'loud' }).message).toContain('LOG_LEVEL');
  });

  it('rejects a DB_PRIMARY_URL that is not a URL, naming it', () => {
    expect(configError({ ...CLUSTER_ENV, DB_PRIMARY_URL: 'not a url' }).message).toContain('DB_PRIMARY_URL');
  });

  it('rejects a timeout or interval longer than a Node timer holds (2^31-1 ms), naming the variable', () => {
    // Node shortens such a wait to 1 ms: a Redis command timeout of 3,000,000 s would fail every command
    for (const variable of ['DB_TIMEOUT_SECONDS', 'REDIS_TIMEOUT_SECONDS', 'TUS_LOCK_TIMEOUT_SECONDS', 'IDLE_TIMEOUT_SECONDS', 'GC_INTERVAL_SECONDS']) {
      expect(configError({ [variable]: '3000000' }).message).toMatch(new RegExp(`^invalid configuration: ${variable}\\b.*must be at most 2147483`));
      expect(loadConfig({ [variable]: '2147483' })[variable as 'GC_INTERVAL_SECONDS']).toBe(2_147_483);
    }
  });

  it('rejects service URLs without their scheme or of another scheme, naming the variable', () => {
    // "localhost:7480" parses as a URL of scheme "localhost:"; the S3 SDK then failed every request
    for (const [variable, value] of [
      ['S3_ENDPOINT', 'localhost:7480'],
      ['S3_PUBLIC_ENDPOINT', 'files.example.com:443'],
      ['REDIS_URL', 'localhost:6379'],
      ['DB_PRIMARY_URL', 'http://app:pw@127.0.0.1:3316/filestore'],
      ['DB_REPLICA_URL', 'mysql:///filestore'],
    ] as const) {
      const message = configError({ ...CLUSTER_ENV, [variable]: value }).message;
      expect(message).toMatch(new RegExp(`^invalid configuration: ${variable}\\b.*: must be a .* URL with a host$`));
      // a database or Redis URL may carry a password
      if (variable.endsWith('_URL')) expect(message).not.toContain(value);
    }
  });

  it('accepts rediss:// and https:// service URLs', () => {
    const config = loadConfig({ ...CLUSTER_ENV, REDIS_URL: 'rediss://cache.internal:6380', S3_ENDPOINT: 'https://s3.internal' });
    expect([config.REDIS_URL, config.S3_ENDPOINT]).toEqual(['rediss://cache.internal:6380', 'https://s3.internal']);
  });

  it('accepts the cluster profile when every backing service is configured', () => {
    const config = loadConfig(CLUSTER_ENV);
    expect(config.FILESTORE_PROFILE).toBe('cluster');
    expect(config.DB_PRIMARY_URL).toBe(CLUSTER_ENV.DB_PRIMARY_URL);
    expect(config.S3_REGION).toBe('us-east-1');
  });

  it('rejects the cluster profile without any service URLs, naming every missing variable', () => {
    const error = configError({ FILESTORE_PROFILE: 'cluster' });
    expect(error.message).toContain('FILESTORE_PROFILE=cluster');
    for (const name of ['DB_PRIMARY_URL', 'DB_REPLICA_URL', 'REDIS_URL', 'S3_ENDPOINT', 'S3_BUCKET', 'S3_ACCESS_KEY', 'S3_SECRET_KEY']) {
      expect(error.message).toContain(name);
    }
  });

  it('rejects the cluster profile without DB_PRIMARY_URL, naming only what is missing', () => {
    const { DB_PRIMARY_URL: _omitted, ...rest } = CLUSTER_ENV;
    const error = configError(rest);
    expect(error.message).toContain('DB_PRIMARY_URL');
    expect(error.message).not.toContain('DB_REPLICA_URL');
    expect(error.message).not.toContain('REDIS_URL');
  });

  it('does not require the cluster variables in the embedded profile', () => {
    expect(loadConfig({ FILESTORE_PROFILE: 'embedded' }).DB_PRIMARY_URL).toBeUndefined();
  });
});

describe('starting with a bad configuration', () => {
  it('exits non-zero with exactly one stderr line naming PORT and no stack trace', async () => {
    const env: NodeJS.ProcessEnv = { ...process.env, PORT: 'notaport', LOG_LEVEL: 'silent' };
    for (const key of Object.keys(CLUSTER_ENV)) delete env[key];
    const child = spawn('npx', ['tsx', 'src/main.ts'], { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    const code = await new Promise<number | null>((resolve) => child.once('close', (exitCode) => resolve(exitCode)));
    clearTimeout(killer);

    expect(code).not.toBe(0);
    expect(code).not.toBeNull(); // null would mean it hung and was killed
    const lines = stderr.split('\n').filter((line) => line.trim() !== '');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain('PORT');
    expect(lines[0]).toContain('notaport');
    expect(stderr).not.toMatch(/^\s+at /m);
    expect(stdout).not.toContain('listening');
  }, 40_000);
});
