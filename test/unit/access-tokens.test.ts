import { afterEach, describe, expect, it, vi } from 'vitest';
import { AccessTokens } from '../../src/auth/access-tokens.js';
import { AppError } from '../../src/errors.js';

const key = new TextEncoder().encode('a-test-key-of-at-least-32-bytes!!');
const claims = { userId: 'u-1', username: 'alice' };
const everyoneExists = async () => true;

async function errorCode(promise: Promise<unknown>): Promise<string> {
  const error = await promise.then(() => null, (caught: unknown) => caught);
  expect(error).toBeInstanceOf(AppError);
  return (error as AppError).code;
}

describe('access tokens (verified once, remembered until they expire)', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('a remembered token is accepted again until its exp, then answers token_expired', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(new Date('2026-01-01T00:00:00.000Z'));
    const tokens = new AccessTokens(key, 60, everyoneExists);
    const token = await tokens.sign(claims);
    expect(await tokens.verify(token)).toEqual(claims);
    vi.setSystemTime(new Date('2026-01-01T00:00:59.999Z'));
    expect(await tokens.verify(token)).toEqual(claims);
    vi.setSystemTime(new Date('2026-01-01T00:01:00.000Z'));
    expect(await errorCode(tokens.verify(token))).toBe('token_expired');
    expect(await errorCode(tokens.verify(token))).toBe('token_expired');
  });

  it('remembering a token does not make a forged one with the same claims valid', async () => {
    const tokens = new AccessTokens(key, 60, everyoneExists);
    const token = await tokens.sign(claims);
    await tokens.verify(token);
    const [header, payload, signature] = token.split('.');
    const forged = `${header}.${payload}.${signature!.slice(0, -2)}${signature!.endsWith('AA') ? 'BB' : 'AA'}`;
    expect(await errorCode(tokens.verify(forged))).toBe('unauthorized');
    const otherKey = new AccessTokens(new TextEncoder().encode('another-key-of-at-least-32-bytes!'), 60, everyoneExists);
    expect(await errorCode(otherKey.verify(token))).toBe('unauthorized');
  });
});
