import { createHook } from 'node:async_hooks';
import { hash, parseOptions } from '@node-rs/argon2';
import { describe, expect, it } from 'vitest';
import { PasswordHashing, standInHash } from '../../src/auth/password-hashing.js';
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

/** The types of the async resources created while `work` runs, but promises. */
async function resourcesCreatedDuring(work: () => unknown): Promise<Set<string>> {
  const types = new Set<string>();
  const hook = createHook({ init: (_id, type) => void types.add(type) }).enable();
  try {
    await work();
  } finally {
    hook.disable();
  }
  types.delete('PROMISE');
  return types;
}

describe('checking a password for a username that does not exist', () => {
  it('importing the auth service runs no argon2 work (it hashed a stand-in at import, outside the turns, in every process)', async () => {
    // an argon2 call queues its native work before it returns: what it creates then is argon2's alone
    let calibration!: Promise<string>;
    const argon2Work = await resourcesCreatedDuring(() => void (calibration = hash('calibration')));
    await calibration;
    expect(argon2Work.size).toBeGreaterThan(0);
    const atImport = await resourcesCreatedDuring(() => import('../../src/auth/auth.service.js'));
    expect([...atImport].filter((type) => argon2Work.has(type))).toEqual([]);
  });

  it('is checked against a stand-in with the parameters of real hashes, which no password matches', async () => {
    const passwords = new PasswordHashing(2, 8);
    const real = await passwords.hash('a password');
    expect(parseOptions(standInHash())).toEqual(parseOptions(real));
    expect(standInHash()).not.toBe(standInHash());
    expect(await passwords.verify(undefined, 'a password')).toBe(false);
    expect(await passwords.verify(undefined, '')).toBe(false);
  });

  it('waits for a turn like any other check, and is refused 503 when the wait is full', async () => {
    const passwords = new PasswordHashing(1, 1);
    let release!: () => void;
    const held = passwords.inTurn(() => new Promise<void>((resolve) => (release = resolve)));
    const waiting = passwords.verify(undefined, 'waits');
    await expect(passwords.verify(undefined, 'one too many')).rejects.toMatchObject({ code: 'unavailable', status: 503 });
    release();
    await held;
    expect(await waiting).toBe(false);
  });
});
