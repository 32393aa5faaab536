import { describe, expect, it } from 'vitest';
import { PasswordHashing } from '../../src/auth/password-hashing.js';
import { AppError } from '../../src/errors.js';

describe('PasswordHashing', () => {
  it('runs at most 2 at once and the rest in turn, first come first served', async () => {
    const passwords = new PasswordHashing(2, 8);
    let running = 0;
    let most = 0;
    const started: number[] = [];
    await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        passwords.inTurn(async () => {
          started.push(i);
          most = Math.max(most, ++running);
          await new Promise((resolve) => setTimeout(resolve, 5));
          running -= 1;
        }),
      ),
    );
    expect(most).toBe(2);
    expect(started).toEqual([...Array(10).keys()]);
  });

  it('refuses work beyond the running and the waiting with 503 unavailable and Retry-After, and takes work again after', async () => {
    const passwords = new PasswordHashing(1, 2);
    let release!: () => void;
    const held = passwords.inTurn(() => new Promise<void>((resolve) => (release = resolve)));
    const waiting = [passwords.hash('first waiter'), passwords.hash('second waiter')];
    const refused = await passwords.hash('one too many').then(() => undefined, (error: unknown) => error);
    expect(refused).toBeInstanceOf(AppError);
    expect(refused).toMatchObject({ code: 'unavailable', status: 503, headers: { 'Retry-After': '1' } });
    release();
    await held;
    const [first] = await Promise.all(waiting);
    expect(await passwords.verify(first!, 'first waiter')).toBe(true);
  });

  it('passes the turn on when the work fails', async () => {
    const passwords = new PasswordHashing(1, 1);
    await expect(passwords.inTurn(() => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(await passwords.inTurn(async () => 'ran')).toBe('ran');
  });
});
