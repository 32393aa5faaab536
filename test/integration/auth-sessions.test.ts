import { randomBytes, randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import { availableProfiles, useApp } from '../support/app.js';
import { ApiClient } from '../support/client.js';

const profiles = await availableProfiles('auth sessions');
const PASSWORD = 'correct horse';
const newName = () => `u${randomBytes(5).toString('hex')}`;
const JWT_SECRET = randomBytes(32).toString('hex');

describe.each(profiles)('refresh token reuse detection (%s profile)', (profile) => {
  const app = useApp(profile);

  // Several rounds: which request wins, and how far it got when the others lost, varies from round to round.
  it('one refresh token sent several times at once: one 200, the rest 401, and the whole family is revoked (the winner’s new token too)', async () => {
    const anon = new ApiClient(app.baseUrl);
    const { username } = await new ApiClient(app.baseUrl).signUp(newName(), PASSWORD);
    for (let round = 0; round < 8; round++) {
      const { refreshToken } = (await anon.post('/api/auth/login', { username, password: PASSWORD })).json;
      const answers = await Promise.all(Array.from({ length: 3 }, () => anon.post('/api/auth/refresh', { refreshToken })));
      expect(answers.map((answer) => answer.status).sort(), `round ${round}`).toEqual([200, 401, 401]);
      const winner = answers.find((answer) => answer.status === 200)!.json.refreshToken as string;
      const replayOfWinner = await anon.post('/api/auth/refresh', { refreshToken: winner });
      expect(replayOfWinner.status, `round ${round}: the winner's new refresh token`).toBe(401);
      expect(replayOfWinner.json.error.code).toBe('invalid_refresh_token');
    }
  });
});

describe.each(profiles)('access tokens of users that do not exist (%s profile)', (profile) => {
  const app = useApp(profile, { JWT_SECRET });

  // Such a token is signed with the server's own key: a user row deleted, or a database replaced while
  // JWT_SECRET stayed. Its requests wrote rows for a user that is not there: foreign-key errors, 500.
  it('a validly signed access token whose user does not exist answers 401 unauthorized everywhere, never 500', async () => {
    const token = await new SignJWT({ username: 'ghost', typ: 'access' })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject(randomUUID())
      .setExpirationTime('15m')
      .sign(new TextEncoder().encode(JWT_SECRET));
    const ghost = new ApiClient(app.baseUrl, token);
    const answers = [
      await ghost.get('/api/me'),
      await ghost.upload('/api/files', { name: 'a.bin', bytes: randomBytes(100) }),
      await ghost.post('/api/uploads', { name: 'b.bin', size: 10 }),
      await ghost.request('POST', '/api/tus', {
        headers: { 'tus-resumable': '1.0.0', 'upload-length': '3', 'upload-metadata': `filename ${Buffer.from('c.bin').toString('base64')}` },
      }),
    ];
    for (const answer of answers) {
      expect(answer.status).toBe(401);
      expect(answer.json).toEqual({ error: { code: 'unauthorized', message: expect.any(String) } });
    }
  });
});
