import { randomBytes } from 'node:crypto';
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { availableProfiles, useApp, startApp, type RunningApp } from '../support/app.js';
import { ApiClient } from '../support/client.js';

const profiles = await availableProfiles('auth');
const JWT_SECRET = randomBytes(32).toString('hex');
const PASSWORD = 'correct horse';
const newName = () => `u${randomBytes(5).toString('hex')}`;

/** Every error answer has this shape: JSON `{ error: { code, message } }`. */
function expectError(response: { status: number; json: any; headers: Headers }, status: number, code: string) {
  expect(response.status).toBe(status);
  expect(response.headers.get('content-type')).toMatch(/^application\/json/);
  expect(response.json).toEqual({ error: { code, message: expect.any(String) } });
}

/** An HS256 access token as the app would sign it, with the given key and expiry. */
function accessToken(key: Uint8Array, userId: string, username: string, exp: number | string) {
  return new SignJWT({ username, typ: 'access' })
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(userId)
    .setIssuedAt(typeof exp === 'number' ? exp - 60 : undefined)
    .setExpirationTime(exp)
    .sign(key);
}

describe.each(profiles)('auth over HTTP (%s profile)', (profile) => {
  let app: RunningApp;
  let anon: ApiClient;
  beforeAll(async () => {
    app = await startApp(profile, { LOGIN_MAX_FAILURES: '3', JWT_SECRET });
    anon = new ApiClient(app.baseUrl);
  });
  afterAll(async () => {
    await app?.close();
  });

  describe('register', () => {
    it('creates a user and answers 201 with its id and username', async () => {
      const username = newName();
      const res = await anon.post('/api/auth/register', { username, password: PASSWORD });
      expect(res.status).toBe(201);
      expect(res.json).toEqual({ user: { id: expect.stringMatching(/^[0-9a-f-]{36}$/), username } });
    });

    it('accepts usernames of exactly 3 and 32 allowed characters', async () => {
      for (const username of [`a${randomBytes(1).toString('hex')}`.slice(0, 3), `A.b_c-${randomBytes(13).toString('hex')}`]) {
        const res = await anon.post('/api/auth/register', { username, password: PASSWORD });
        expect(res.status, username).toBe(201);
      }
    });

    it('refuses a taken username with 409 username_taken', async () => {
      const username = newName();
      expect((await anon.post('/api/auth/register', { username, password: PASSWORD })).status).toBe(201);
      expectError(await anon.post('/api/auth/register', { username, password: 'another password' }), 409, 'username_taken');
    });

    it.each([
      ['too short', 'ab'],
      ['with a space', 'bad name'],
      ['with a slash', 'a/b/c'],
      ['with a non-ASCII letter', 'jürgen'],
      ['33 characters long', 'a'.repeat(33)],
      ['empty', ''],
    ])('rejects a username %s with 400 invalid_input naming the field', async (_label, username) => {
      const res = await anon.post('/api/auth/register', { username, password: PASSWORD });
      expectError(res, 400, 'invalid_input');
      expect(res.json.error.message).toContain('username');
    });

    it('rejects a password shorter than 8 characters with 400 naming the field', async () => {
      const res = await anon.post('/api/auth/register', { username: newName(), password: '1234567' });
      expectError(res, 400, 'invalid_input');
      expect(res.json.error.message).toContain('password');
    });

    it.each([{}, { username: 12345, password: PASSWORD }])('rejects the body %j with 400', async (body) => {
      expectError(await anon.post('/api/auth/register', body), 400, 'invalid_input');
    });
  });

  describe('login', () => {
    it('answers 200 with an access token, a refresh token and expiresIn', async () => {
      const username = newName();
      await anon.post('/api/auth/register', { username, password: PASSWORD });
      const res = await anon.post('/api/auth/login', { username, password: PASSWORD });
      expect(res.status).toBe(200);
      expect(res.json).toEqual({ accessToken: expect.any(String), refreshToken: expect.any(String), expiresIn: 900 });
      const me = await new ApiClient(app.baseUrl, res.json.accessToken).get('/api/me');
      expect(me.status).toBe(200);
      expect(me.json.username).toBe(username);
    });

    it('answers a wrong password and an unknown user with the same 401 body', async () => {
      const username = newName();
      await anon.post('/api/auth/register', { username, password: PASSWORD });
      const wrongPassword = await anon.post('/api/auth/login', { username, password: 'wrong password' });
      const unknownUser = await anon.post('/api/auth/login', { username: newName(), password: PASSWORD });
      expectError(wrongPassword, 401, 'invalid_credentials');
      expectError(unknownUser, 401, 'invalid_credentials');
      expect(unknownUser.text).toBe(wrongPassword.text);
    });

    it('answers malformed JSON with 400 invalid_input, not 500', async () => {
      for (const path of ['/api/auth/login', '/api/auth/register', '/api/auth/refresh']) {
        const res = await anon.request('POST', path, { body: '{"username": "x", ', headers: { 'content-type': 'application/json' } });
        expectError(res, 400, 'invalid_input');
      }
    });

    it('answers a missing or non-object body with 400', async () => {
      expectError(await anon.request('POST', '/api/auth/login'), 400, 'invalid_input');
      const res = await anon.request('POST', '/api/auth/login', { body: '"just a string"', headers: { 'content-type': 'application/json' } });
      expectError(res, 400, 'invalid_input');
    });
  });

  describe('login rate limiting (LOGIN_MAX_FAILURES=3)', () => {
    it('after 3 wrong passwords refuses even the right one with 429 and Retry-After', async () => {
      const username = newName();
      await anon.post('/api/auth/register', { username, password: PASSWORD });
      for (let i = 0; i < 3; i++) {
        expectError(await anon.post('/api/auth/login', { username, password: `wrong ${i}` }), 401, 'invalid_credentials');
      }
      const locked = await anon.post('/api/auth/login', { username, password: PASSWORD });
      expectError(locked, 429, 'too_many_requests');
      const retryAfter = Number(locked.headers.get('retry-after'));
      expect(Number.isInteger(retryAfter)).toBe(true);
      expect(retryAfter).toBeGreaterThanOrEqual(1);
      expect(retryAfter).toBeLessThanOrEqual(900);
    });

    it('judges at most 3 of 8 wrong passwords sent at once: three 401, five 429', async () => {
      const username = newName();
      await anon.post('/api/auth/register', { username, password: PASSWORD });
      const answers = await Promise.all(Array.from({ length: 8 }, (_, i) => anon.post('/api/auth/login', { username, password: `guess ${i}` })));
      expect(answers.map((answer) => answer.status).sort()).toEqual([401, 401, 401, 429, 429, 429, 429, 429]);
      expect((await anon.post('/api/auth/login', { username, password: PASSWORD })).status).toBe(429);
    });

    it('does not affect a different username', async () => {
      const [locked, other] = [newName(), newName()];
      await anon.post('/api/auth/register', { username: locked, password: PASSWORD });
      await anon.post('/api/auth/register', { username: other, password: PASSWORD });
      for (let i = 0; i < 3; i++) await anon.post('/api/auth/login', { username: locked, password: 'wrong password' });
      expect((await anon.post('/api/auth/login', { username: locked, password: PASSWORD })).status).toBe(429);
      expect((await anon.post('/api/auth/login', { username: other, password: PASSWORD })).status).toBe(200);
    });

    it('forgets earlier failures after a successful login', async () => {
      const username = newName();
      await anon.post('/api/auth/register', { username, password: PASSWORD });
      for (let i = 0; i < 2; i++) await anon.post('/api/auth/login', { username, password: 'wrong password' });
      expect((await anon.post('/api/auth/login', { username, password: PASSWORD })).status).toBe(200);
      for (let i = 0; i < 2; i++) await anon.post('/api/auth/login', { username, password: 'wrong password' });
      expect((await anon.post('/api/auth/login', { username, password: PASSWORD })).status).toBe(200);
    });
  });

  describe('refresh and logout', () => {
    it('exchanges a refresh token for a new pair and rejects the old refresh token with 401', async () => {
      const { refreshToken: first } = await new ApiClient(app.baseUrl).signUp(newName(), PASSWORD);
      const rotated = await anon.post('/api/auth/refresh', { refreshToken: first });
      expect(rotated.status).toBe(200);
      expect(rotated.json).toEqual({ accessToken: expect.any(String), refreshToken: expect.any(String), expiresIn: 900 });
      expect(rotated.json.refreshToken).not.toBe(first);
      expect((await new ApiClient(app.baseUrl, rotated.json.accessToken).get('/api/me')).status).toBe(200);
      expectError(await anon.post('/api/auth/refresh', { refreshToken: first }), 401, 'invalid_refresh_token');
    });

    it('keeps rotating as long as each refresh token is used once', async () => {
      let { refreshToken } = await new ApiClient(app.baseUrl).signUp(newName(), PASSWORD);
      for (let i = 0; i < 3; i++) {
        const res = await anon.post('/api/auth/refresh', { refreshToken });
        expect(res.status).toBe(200);
        refreshToken = res.json.refreshToken;
      }
    });

    it('revokes the whole family when a rotated-out refresh token is replayed', async () => {
      const client = new ApiClient(app.baseUrl);
      const { username, refreshToken: first } = await client.signUp(newName(), PASSWORD);
      const other = await anon.post('/api/auth/login', { username, password: PASSWORD }); // a second session
      const second = (await anon.post('/api/auth/refresh', { refreshToken: first })).json.refreshToken as string;
      expectError(await anon.post('/api/auth/refresh', { refreshToken: first }), 401, 'invalid_refresh_token');
      // the newer token of the same family was never used, yet it is revoked now
      expectError(await anon.post('/api/auth/refresh', { refreshToken: second }), 401, 'invalid_refresh_token');
      // the user's other session is a different family and still works
      expect((await anon.post('/api/auth/refresh', { refreshToken: other.json.refreshToken })).status).toBe(200);
    });

    it.each([
      ['garbage', 'not-a-token'],
      ['an unknown id', '00000000-0000-0000-0000-000000000000.secret'],
      ['too many parts', 'a.b.c'],
    ])('rejects %s as a refresh token with 401', async (_label, refreshToken) => {
      expectError(await anon.post('/api/auth/refresh', { refreshToken }), 401, 'invalid_refresh_token');
    });

    it('rejects a known token id with the wrong secret with 401', async () => {
      const { refreshToken } = await new ApiClient(app.baseUrl).signUp(newName(), PASSWORD);
      const forged = `${refreshToken.split('.')[0]}.${randomBytes(32).toString('base64url')}`;
      expectError(await anon.post('/api/auth/refresh', { refreshToken: forged }), 401, 'invalid_refresh_token');
      expect((await anon.post('/api/auth/refresh', { refreshToken })).status).toBe(200);
    });

    it('logout answers 204 and the refresh token is then rejected with 401', async () => {
      const client = new ApiClient(app.baseUrl);
      const { refreshToken } = await client.signUp(newName(), PASSWORD);
      const res = await client.post('/api/auth/logout', { refreshToken });
      expect(res.status).toBe(204);
      expect(res.text).toBe('');
      expectError(await anon.post('/api/auth/refresh', { refreshToken }), 401, 'invalid_refresh_token');
    });

    it('logout requires an access token', async () => {
      const { refreshToken } = await new ApiClient(app.baseUrl).signUp(newName(), PASSWORD);
      expectError(await anon.post('/api/auth/logout', { refreshToken }), 401, 'unauthorized');
      expect((await anon.post('/api/auth/refresh', { refreshToken })).status).toBe(200);
    });

    it("logout refuses another user's refresh token and leaves it working", async () => {
      const mallory = new ApiClient(app.baseUrl);
      await mallory.signUp(newName(), PASSWORD);
      const { refreshToken } = await new ApiClient(app.baseUrl).signUp(newName(), PASSWORD);
      expectError(await mallory.post('/api/auth/logout', { refreshToken }), 401, 'invalid_refresh_token');
      expect((await anon.post('/api/auth/refresh', { refreshToken })).status).toBe(200);
    });
  });

  describe('access tokens and /api/me', () => {
    it('/api/me answers id, username and usedBytes, which grows with an upload', async () => {
      const client = new ApiClient(app.baseUrl);
      const { username, userId } = await client.signUp(newName(), PASSWORD);
      expect((await client.get('/api/me')).json).toEqual({ id: userId, username, usedBytes: 0 });
      expect((await client.upload('/api/files', { name: 'a.bin', bytes: randomBytes(1234) })).status).toBe(201);
      expect((await client.get('/api/me')).json).toEqual({ id: userId, username, usedBytes: 1234 });
    });

    it('refuses a request without a token with 401 JSON, whatever its body (malformed JSON included)', async () => {
      expectError(await anon.get('/api/me'), 401, 'unauthorized');
      expectError(await anon.get('/api/files'), 401, 'unauthorized');
      for (const path of ['/api/uploads', '/api/auth/logout']) {
        const malformed = await anon.request('POST', path, { body: '{"name":', headers: { 'content-type': 'application/json' } });
        expectError(malformed, 401, 'unauthorized');
      }
    });

    it.each([
      ['a garbage bearer token', 'Bearer not.a.jwt'],
      ['a Basic header', `Basic ${Buffer.from('user:pass').toString('base64')}`],
      ['an empty bearer', 'Bearer '],
    ])('refuses %s with 401 JSON', async (_label, authorization) => {
      expectError(await anon.get('/api/me', { authorization }), 401, 'unauthorized');
    });

    it('refuses a well-formed token signed with another key with 401', async () => {
      const { userId, username } = await new ApiClient(app.baseUrl).signUp(newName(), PASSWORD);
      const token = await accessToken(randomBytes(32), userId, username, '15m');
      expectError(await new ApiClient(app.baseUrl, token).get('/api/me'), 401, 'unauthorized');
    });

    it('refuses an expired token with 401 token_expired', async () => {
      const { userId, username } = await new ApiClient(app.baseUrl).signUp(newName(), PASSWORD);
      const key = new TextEncoder().encode(JWT_SECRET);
      const valid = await accessToken(key, userId, username, '15m');
      expect((await new ApiClient(app.baseUrl, valid).get('/api/me')).status).toBe(200); // the key is right
      const expired = await accessToken(key, userId, username, Math.floor(Date.now() / 1000) - 10);
      expectError(await new ApiClient(app.baseUrl, expired).get('/api/me'), 401, 'token_expired');
    });

    it('refuses a token with the right key that is not an access token', async () => {
      const { userId } = await new ApiClient(app.baseUrl).signUp(newName(), PASSWORD);
      const token = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject(userId).setExpirationTime('15m')
        .sign(new TextEncoder().encode(JWT_SECRET));
      expectError(await new ApiClient(app.baseUrl, token).get('/api/me'), 401, 'unauthorized');
    });

    it("a user's token cannot read, rename or delete another user's file (404)", async () => {
      const alice = new ApiClient(app.baseUrl);
      const bob = new ApiClient(app.baseUrl);
      await alice.signUp(newName(), PASSWORD);
      await bob.signUp(newName(), PASSWORD);
      const bytes = randomBytes(100);
      const file = (await alice.upload('/api/files', { name: 'secret.txt', bytes })).json;
      expectError(await bob.get(`/api/files/${file.id}`), 404, 'not_found');
      expectError(await bob.get(`/api/files/${file.id}/content`), 404, 'not_found');
      expectError(await bob.request('PATCH', `/api/files/${file.id}`, { json: { name: 'mine.txt' } }), 404, 'not_found');
      expectError(await bob.request('DELETE', `/api/files/${file.id}`), 404, 'not_found');
      expect((await bob.get('/api/files')).json).toEqual({ folder: '/', folders: [], files: [] });
      const still = await alice.get(`/api/files/${file.id}/content`);
      expect(still.status).toBe(200);
      expect(still.bytes.equals(bytes)).toBe(true);
      expect((await alice.get(`/api/files/${file.id}`)).json.name).toBe('secret.txt');
    });
  });
});

// exp counts whole seconds from a truncated iat, so a TTL of n seconds lives between n-1 and n seconds:
// 3 leaves a loaded machine two seconds for the first request.
describe.each(profiles)('access token lifetime (%s profile, ACCESS_TOKEN_TTL_SECONDS=3)', (profile) => {
  const app = useApp(profile, { ACCESS_TOKEN_TTL_SECONDS: '3' });

  const waitPastExpiry = async (token: string) => {
    const { exp } = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString());
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, exp * 1000 - Date.now()) + 1100));
  };

  it('an access token stops working after its TTL with 401 token_expired; refresh issues a working one', async () => {
    const client = new ApiClient(app.baseUrl);
    const { refreshToken } = await client.signUp(newName(), PASSWORD);
    expect((await client.get('/api/me')).status).toBe(200);
    await waitPastExpiry(client.token!);
    expectError(await client.get('/api/me'), 401, 'token_expired');
    const refreshed = await client.post('/api/auth/refresh', { refreshToken });
    expect(refreshed.status).toBe(200);
    expect(refreshed.json.expiresIn).toBe(3);
    client.token = refreshed.json.accessToken;
    expect((await client.get('/api/me')).status).toBe(200);
  });
});
