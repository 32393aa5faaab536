import { randomBytes } from 'node:crypto';
import { hash, verify } from '@node-rs/argon2';
import { AppError } from '../errors.js';

/** argon2id's cost: the library's defaults (OWASP's minimum), written out because standInHash states them too. */
const COST = { memoryCost: 19456, timeCost: 2, parallelism: 1, outputLen: 32 };

/**
 * A hash no password matches (random salt and digest) at the cost of real ones, so checking a password
 * against it takes what a wrong password for a real user takes. Built, not hashed: hashing one at import
 * had every process (API, workers, each test file) run an argon2 outside the turns, needed or not.
 */
export function standInHash(): string {
  const b64 = (bytes: number) => randomBytes(bytes).toString('base64').replace(/=+$/, '');
  return `$argon2id$v=19$m=${COST.memoryCost},t=${COST.timeCost},p=${COST.parallelism}$${b64(16)}$${b64(COST.outputLen)}`;
}

/**
 * argon2id hashes and verifies with a bound on how many this process runs at once. Each one holds a
 * thread of libuv's pool and ~19 MiB for tens of ms, and that pool also carries every upload's disk
 * writes and flushes: unbounded, a burst of logins or registrations took every thread and stalled the
 * uploads. At most `maxRunning` run at once, at most `maxWaiting` more wait for a turn (first come, first
 * served), and a request beyond those answers 503 at once rather than queueing without end.
 */
export class PasswordHashing {
  private running = 0;
  private readonly waiting: Array<() => void> = [];
  private readonly standIn = standInHash();

  constructor(
    private readonly maxRunning: number,
    private readonly maxWaiting: number,
  ) {}

  hash(password: string): Promise<string> {
    return this.inTurn(() => hash(password, COST));
  }

  /**
   * `passwordHash` undefined: the username does not exist. The password is then checked against the
   * stand-in, in a turn like any other, and fails: how long the answer takes tells no one which
   * usernames exist.
   */
  verify(passwordHash: string | undefined, password: string): Promise<boolean> {
    return this.inTurn(() => verify(passwordHash ?? this.standIn, password));
  }

  /** Runs `work` in one of the turns, once one is free; 503 `unavailable` when the wait is full. */
  async inTurn<T>(work: () => Promise<T>): Promise<T> {
    await this.takeTurn();
    try {
      return await work();
    } finally {
      this.passTurn();
    }
  }

  private takeTurn(): Promise<void> {
    if (this.running < this.maxRunning) {
      this.running += 1;
      return Promise.resolve();
    }
    if (this.waiting.length >= this.maxWaiting) {
      throw new AppError('unavailable', 'Too many password checks are under way; try again shortly.', {}, { 'Retry-After': '1' });
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  /** The turn goes straight to the longest waiter, so a newcomer cannot slip in ahead of it. */
  private passTurn(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.running -= 1;
  }
}
