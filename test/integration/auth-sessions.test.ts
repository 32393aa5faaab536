import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { availableProfiles, useApp } from '../support/app.js';
import { ApiClient } from '../support/client.js';

const profiles = await availableProfiles('auth sessions');
const PASSWORD = 'correct horse';
const newName = () => `u${randomBytes(5).toString('hex')}`;

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
