import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import type { Cache } from '../cache/cache.js';
import { isUniqueViolation } from '../db/database.js';
import type { TokensRepository } from '../db/tokens.repository.js';
import type { UsersRepository } from '../db/users.repository.js';
import { AppError } from '../errors.js';
import type { AccessTokens } from './access-tokens.js';
import { clientNetwork } from './client-network.js';
import type { PasswordHashing } from './password-hashing.js';

export interface TokenPair {
  accessToken: string;
  refreshToken: string;
  expiresIn: number;
}

export interface AuthServiceDeps {
  users: UsersRepository;
  tokens: TokensRepository;
  accessTokens: AccessTokens;
  cache: Cache;
  passwords: PasswordHashing;
  refreshTtlSeconds: number;
  loginMaxFailures: number;
  loginMaxFailuresPerIp: number;
  loginWindowSeconds: number;
  registerMaxPerIp: number;
  registerWindowSeconds: number;
}

export class AuthService {
  constructor(private readonly deps: AuthServiceDeps) {}

  /**
   * Registrations per client IP are counted, each before its password is hashed (a taken username
   * counts too: it cost a hash); one that failed for the server's reasons is handed back.
   */
  async register(username: string, password: string, ip: string): Promise<{ id: string; username: string }> {
    const throttleKey = `register:${clientNetwork(ip)}`;
    await this.takeAttempt(throttleKey, this.deps.registerMaxPerIp, this.deps.registerWindowSeconds);
    const id = randomUUID();
    try {
      await this.deps.users.create({ id, username, password_hash: await this.deps.passwords.hash(password), created_at: Date.now() });
    } catch (error) {
      if (isUniqueViolation(error)) throw new AppError('username_taken');
      await this.deps.cache.giveBack(throttleKey);
      throw error;
    }
    return { id, username };
  }

  /**
   * Failed attempts are counted per username+ip and per ip across usernames (one IP trying a password
   * on many accounts); past either limit even a right password waits. Each attempt is counted before
   * its password is checked, in one atomic step with the limit check, so guesses sent at once cannot
   * have more than the limit checked. A right password clears its username+ip count and hands back
   * its ip attempt: the ip count stays, so logging in to an account of one's own between guesses
   * does not reset it.
   */
  async login(username: string, password: string, ip: string): Promise<TokenPair> {
    const network = clientNetwork(ip);
    const ipKey = `login-ip:${network}`;
    const userKey = `login:${username}:${network}`;
    await this.takeAttempt(ipKey, this.deps.loginMaxFailuresPerIp, this.deps.loginWindowSeconds);
    try {
      await this.takeAttempt(userKey, this.deps.loginMaxFailures, this.deps.loginWindowSeconds);
    } catch (error) {
      await this.deps.cache.giveBack(ipKey);
      throw error;
    }
    let user: Awaited<ReturnType<UsersRepository['findByUsername']>>;
    let ok: boolean;
    try {
      user = await this.deps.users.findByUsername(username);
      ok = await this.deps.passwords.verify(user?.password_hash, password);
    } catch (error) {
      // the password was never checked (the database is down, no turn to verify in): not a failed attempt
      await Promise.all([this.deps.cache.giveBack(userKey), this.deps.cache.giveBack(ipKey)]);
      throw error;
    }
    if (!user || !ok) throw new AppError('invalid_credentials');
    await Promise.all([this.deps.cache.forget(userKey), this.deps.cache.giveBack(ipKey)]);
    return this.issue(user.id, user.username, randomUUID());
  }

  /** Takes one of `limit` attempts in `key`'s window, or answers 429 with what is left of the window. */
  private async takeAttempt(key: string, limit: number, windowSeconds: number): Promise<void> {
    const attempt = await this.deps.cache.take(key, limit, windowSeconds);
    if (!attempt.taken) throw new AppError('too_many_requests', undefined, {}, { 'Retry-After': String(attempt.retryAfterSeconds) });
  }

  /**
   * Rotates the refresh token; a rotated-out token presented again revokes its whole family. The
   * successor is stored before the presented token is revoked: a request with the same token that
   * loses that revocation revokes the family only after every successor exists, so it takes the
   * winner's too (revoking first let the winner's successor land after the family was revoked).
   */
  async refresh(presented: string): Promise<TokenPair> {
    const token = await this.findPresented(presented);
    const now = Date.now();
    if (token.revoked_at !== null) await this.reused(token.family);
    if (token.expires_at <= now) throw new AppError('invalid_refresh_token', 'The refresh token has expired.');
    const user = await this.deps.users.findById(token.user_id);
    if (!user) throw new AppError('invalid_refresh_token');
    const pair = await this.issue(user.id, user.username, token.family);
    if (!(await this.deps.tokens.revokeIfActive(token.id, Date.now()))) await this.reused(token.family);
    return pair;
  }

  private async reused(family: string): Promise<never> {
    await this.deps.tokens.revokeFamily(family, Date.now());
    throw new AppError('invalid_refresh_token', 'The refresh token was already used; its session is revoked.');
  }

  async logout(userId: string, presented: string): Promise<void> {
    const token = await this.findPresented(presented);
    if (token.user_id !== userId) throw new AppError('invalid_refresh_token');
    await this.deps.tokens.revokeFamily(token.family, Date.now());
  }

  private async issue(userId: string, username: string, family: string): Promise<TokenPair> {
    const id = randomUUID();
    const secret = randomBytes(32).toString('base64url');
    const now = Date.now();
    await this.deps.tokens.insert({
      id,
      user_id: userId,
      family,
      token_hash: sha256(secret),
      expires_at: now + this.deps.refreshTtlSeconds * 1000,
      revoked_at: null,
      created_at: now,
    });
    return {
      accessToken: await this.deps.accessTokens.sign({ userId, username }),
      refreshToken: `${id}.${secret}`,
      expiresIn: this.deps.accessTokens.ttlSeconds,
    };
  }

  /** The stored row of a presented "<id>.<secret>" token whose secret matches, or 401. */
  private async findPresented(presented: string) {
    const [id, secret, extra] = presented.split('.');
    const invalid = new AppError('invalid_refresh_token');
    if (!id || !secret || extra !== undefined || !/^[0-9a-f-]{36}$/.test(id)) throw invalid;
    const token = await this.deps.tokens.findById(id);
    if (!token) throw invalid;
    const expected = Buffer.from(token.token_hash, 'hex');
    const actual = Buffer.from(sha256(secret), 'hex');
    if (!timingSafeEqual(expected, actual)) throw invalid;
    return token;
  }
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}
