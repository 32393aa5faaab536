import net from 'node:net';
import path from 'node:path';
import { z } from 'zod';

const port = z.string().regex(/^\d{1,5}$/, 'must be a port number').transform(Number).pipe(z.number().max(65535));
const positiveInt = z.string().regex(/^\d+$/, 'must be a whole number').transform(Number).pipe(z.number().int().positive());
/** Seconds a timer waits: Node holds at most 2^31-1 ms in one, and shortens a longer wait to 1 ms (with a warning). */
const timerSeconds = positiveInt.pipe(z.number().max(2_147_483, 'must be at most 2147483 (about 24 days)'));
/**
 * A URL of one of `schemes` with a host. z.string().url() took "localhost:7480" (scheme "localhost:"),
 * and the S3 SDK then failed every request instead of the start failing.
 */
const urlOf = (...schemes: string[]) =>
  z
    .string()
    .refine((value) => URL.canParse(value) && schemes.includes(new URL(value).protocol) && new URL(value).hostname !== '', {
      message: `must be a ${schemes.map((scheme) => `${scheme}//`).join(' or ')} URL with a host`,
    })
    .optional();

/**
 * The proxies whose X-Forwarded-For is believed, as Express's `trust proxy` takes them: the names
 * loopback, linklocal, uniquelocal, and IP addresses or CIDR ranges, comma-separated. Only a list: `true`
 * or a hop count would let any client name its own IP and walk past the per-IP throttles.
 */
const PROXY_NAMES = new Set(['loopback', 'linklocal', 'uniquelocal']);
const trustedProxies = z
  .string()
  .transform((list) => list.split(',').map((entry) => entry.trim()).filter(Boolean))
  .refine((entries) => entries.every((entry) => PROXY_NAMES.has(entry) || isIpOrRange(entry)), {
    message: 'must be a comma-separated list of loopback, linklocal, uniquelocal, IP addresses or CIDR ranges',
  });

function isIpOrRange(entry: string): boolean {
  const [address, bits, ...rest] = entry.split('/');
  const version = net.isIP(address ?? '');
  if (version === 0 || rest.length > 0) return false;
  return bits === undefined || (/^\d{1,3}$/.test(bits) && Number(bits) <= (version === 4 ? 32 : 128));
}

/** Every environment variable the service reads, with its default; README documents the same table. */
const schema = z.object({
  FILESTORE_PROFILE: z.enum(['embedded', 'cluster']).default('embedded'),
  PORT: port.default(8080),
  HOST: z.string().min(1).default('0.0.0.0'),
  TRUST_PROXY: trustedProxies.default(['loopback']),
  DATA_DIR: z.string().min(1).default('./data'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  DB_PRIMARY_URL: urlOf('mysql:'),
  DB_REPLICA_URL: urlOf('mysql:'),
  REDIS_URL: urlOf('redis:', 'rediss:'),
  REDIS_KEY_PREFIX: z.string().default('filestore:'),
  DB_TIMEOUT_SECONDS: timerSeconds.default(5),
  REDIS_TIMEOUT_SECONDS: timerSeconds.default(2),
  S3_ENDPOINT: urlOf('http:', 'https:'),
  S3_BUCKET: z.string().min(1).optional(),
  S3_ACCESS_KEY: z.string().min(1).optional(),
  S3_SECRET_KEY: z.string().min(1).optional(),
  S3_REGION: z.string().min(1).default('us-east-1'),
  JWT_SECRET: z.string().min(32).optional(),
  ACCESS_TOKEN_TTL_SECONDS: positiveInt.default(900),
  REFRESH_TOKEN_TTL_SECONDS: positiveInt.default(30 * 24 * 3600),
  LOGIN_MAX_FAILURES: positiveInt.default(10),
  LOGIN_IP_MAX_FAILURES: positiveInt.default(100),
  LOGIN_WINDOW_SECONDS: positiveInt.default(900),
  REGISTER_MAX_PER_IP: positiveInt.default(20),
  REGISTER_WINDOW_SECONDS: positiveInt.default(3600),
  ARGON2_MAX_CONCURRENT: positiveInt.default(2),
  ARGON2_MAX_QUEUED: positiveInt.default(32),
  READ_YOUR_WRITES_SECONDS: positiveInt.default(5),
  MAX_UPLOAD_BYTES: positiveInt.default(64 * 1024 ** 3),
  UPLOAD_TTL_SECONDS: positiveInt.default(24 * 3600),
  TUS_LOCK_TIMEOUT_SECONDS: timerSeconds.default(30),
  IDLE_TIMEOUT_SECONDS: timerSeconds.default(120),
  DEDUPE_SCOPE: z.enum(['global', 'user']).default('global'),
  GC_GRACE_SECONDS: positiveInt.default(3600),
  GC_INTERVAL_SECONDS: timerSeconds.default(300),
  GC_ORPHAN_GRACE_SECONDS: positiveInt.default(24 * 3600),
  VERIFY_INTERVAL_SECONDS: positiveInt.default(7 * 24 * 3600),
  S3_ABANDONED_UPLOAD_SECONDS: positiveInt.default(24 * 3600),
  TRANSFER_RETRY_AFTER_SECONDS: positiveInt.default(3600),
  ADMIN_USERS: z.string().default('').transform((list) => list.split(',').map((name) => name.trim()).filter(Boolean)),
  S3_PUBLIC_ENDPOINT: urlOf('http:', 'https:'),
  WORKER_METRICS_PORT: port.default(9464),
});

const clusterRequired = ['DB_PRIMARY_URL', 'DB_REPLICA_URL', 'REDIS_URL', 'S3_ENDPOINT', 'S3_BUCKET', 'S3_ACCESS_KEY', 'S3_SECRET_KEY'] as const;

export type Config = Readonly<z.infer<typeof schema> & { DATA_DIR: string }>;

export class ConfigError extends Error {}

/** Reads and validates the environment once; a bad value stops the start with one line naming the variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const known = Object.fromEntries(Object.keys(schema.shape).map((key) => [key, env[key] === '' ? undefined : env[key]]));
  const parsed = schema.safeParse(known);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const variable = String(issue.path[0]);
    // secrets and URLs that may carry passwords are named, never echoed
    const shown = /SECRET|KEY|URL/.test(variable) ? '' : `=${JSON.stringify(env[variable])}`;
    throw new ConfigError(`invalid configuration: ${variable}${shown}: ${issue.message}`);
  }
  const config = parsed.data;
  if (config.FILESTORE_PROFILE === 'cluster') {
    const missing = clusterRequired.filter((key) => !config[key]);
    if (missing.length > 0) {
      throw new ConfigError(`invalid configuration: FILESTORE_PROFILE=cluster needs ${missing.join(', ')}`);
    }
  }
  return Object.freeze({ ...config, DATA_DIR: path.resolve(config.DATA_DIR) });
}

/** loadConfig for a program's entry point: a bad value ends the process with one line naming it. */
export function loadConfigOrExit(program: string): Config {
  try {
    return loadConfig();
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`${program}: ${error.message}\n`);
    process.exit(1);
  }
}
