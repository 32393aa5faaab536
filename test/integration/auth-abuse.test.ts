import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { availableProfiles, startApp, useApp, type RunningApp } from '../support/app.js';
import { ApiClient } from '../support/client.js';

const profiles = await availableProfiles('auth abuse');
const PASSWORD = 'correct horse';
const newName = () => `u${randomBytes(5).toString('hex')}`;
let ipsUsed = 0;
/** A documentation address (RFC 5737) of its own, sent as X-Forwarded-For: the app trusts a loopback proxy. */
const newIp = () => `198.51.100.${++ipsUsed}`;

type Answer = Awaited<ReturnType<ApiClient['request']>>;

/** The JSON error shape, with a Retry-After of whole seconds between 1 and `maxRetryAfter`. */
function expectRefusal(answer: Answer, status: number, code: string, maxRetryAfter: number) {
  expect(answer.status).toBe(status);
  expect(answer.json).toEqual({ error: { code, message: expect.any(String) } });
  const retryAfter = Number(answer.headers.get('retry-after'));
  expect(Number.isInteger(retryAfter)).toBe(true);
  expect(retryAfter).toBeGreaterThanOrEqual(1);
  expect(retryAfter).toBeLessThanOrEqual(maxRetryAfter);
}

function from(app: RunningApp, ip?: string) {
  const client = new ApiClient(app.baseUrl);
  const headers: Record<string, string> = ip ? { 'x-forwarded-for': ip } : {};
  return {
    register: (username: string, password = PASSWORD) => client.request('POST', '/api/auth/register', { json: { username, password }, headers }),
    login: (username: string, password = PASSWORD) => client.request('POST', '/api/auth/login', { json: { username, password }, headers }),
  };
}

describe.each(profiles)('registrations per IP (%s profile, REGISTER_MAX_PER_IP=3)', (profile) => {
  const app = useApp(profile, { REGISTER_MAX_PER_IP: '3' });

  it('answers the 4th registration from one IP with 429 and Retry-After, and creates no user', async () => {
    const ip = from(app);
    for (let i = 0; i < 3; i++) expect((await ip.register(newName())).status).toBe(201);
    const refused = newName();
    expectRefusal(await ip.register(refused), 429, 'too_many_requests', 3600);
    expect(await app.services.users.findByUsername(refused)).toBeUndefined();
    // another IP behind the loopback proxy is not affected
    const other = newName();
    expect((await from(app, newIp()).register(other)).status).toBe(201);
    expect(await app.services.users.findByUsername(other)).toBeDefined();
  });

  it('lets 3 of 6 registrations sent at once from one IP through: three 201, three 429', async () => {
    const ip = from(app, newIp());
    const answers = await Promise.all(Array.from({ length: 6 }, () => ip.register(newName())));
    expect(answers.map((answer) => answer.status).sort()).toEqual([201, 201, 201, 429, 429, 429]);
  });

  it('does not count a body refused before hashing (400)', async () => {
    const ip = from(app, newIp());
    for (let i = 0; i < 4; i++) expect((await ip.register(newName(), 'short')).status).toBe(400);
    for (let i = 0; i < 3; i++) expect((await ip.register(newName())).status).toBe(201);
  });

describe.each(profiles)('IPv6 clients counted by their /64 (%s profile, LOGIN_MAX_FAILURES=3)', (profile) => {
  const app = useApp(profile, { LOGIN_MAX_FAILURES: '3' });
  let networks = 0;
  /** Addresses of one documentation /64 (RFC 3849) of this test's own. */
  const newNetwork = () => {
    networks += 1;
    return (host: number) => `2001:db8:${networks.toString(16)}:${ipsUsed.toString(16)}::${host.toString(16)}`;
  };

  it('refuses the 4th wrong password for one account from a new address of the same /64 with 429, and not from another /64', async () => {
    const name = newName();
    expect((await from(app).register(name)).status).toBe(201);
    const network = newNetwork();
    for (let host = 1; host <= 3; host++) expect((await from(app, network(host)).login(name, 'wrong password')).status).toBe(401);
    expectRefusal(await from(app, network(4)).login(name, 'wrong password'), 429, 'too_many_requests', 900);
    expect((await from(app, newNetwork()(1)).login(name)).status).toBe(200);
  });
});

describe.each(profiles)('the proxies whose X-Forwarded-For is believed (%s profile, TRUST_PROXY)', (profile) => {
  const untrusting = useApp(profile, { REGISTER_MAX_PER_IP: '2', TRUST_PROXY: '10.9.8.7' });
  const trusting = useApp(profile, { REGISTER_MAX_PER_IP: '2', TRUST_PROXY: '127.0.0.1/8, 10.9.8.7' });

  it('counts a client that is not a trusted proxy by its own address, whatever X-Forwarded-For it sends', async () => {
    for (let i = 0; i < 2; i++) expect((await from(untrusting, newIp()).register(newName())).status).toBe(201);
    expectRefusal(await from(untrusting, newIp()).register(newName()), 429, 'too_many_requests', 3600);
  });

  it('counts the forwarded client of a proxy in a configured range', async () => {
    for (let i = 0; i < 2; i++) expect((await from(trusting, newIp()).register(newName())).status).toBe(201);
    expect((await from(trusting, newIp()).register(newName())).status).toBe(201);
  });
});
});

describe.each(profiles)('failed logins per IP across usernames (%s profile, LOGIN_IP_MAX_FAILURES=4)', (profile) => {
  const app = useApp(profile, { LOGIN_IP_MAX_FAILURES: '4' });
  let alice: string;
  beforeAll(async () => {
    alice = newName();
    expect((await from(app).register(alice)).status).toBe(201);
  });

  it('after 4 failures over 4 usernames refuses a 5th username, and the right password, with 429 from that IP only', async () => {
    const ip = from(app, newIp());
    for (let i = 0; i < 4; i++) expect((await ip.login(newName(), 'guessed password')).status).toBe(401);
    expectRefusal(await ip.login(newName(), 'guessed password'), 429, 'too_many_requests', 900);
    expectRefusal(await ip.login(alice), 429, 'too_many_requests', 900);
    expect((await from(app, newIp()).login(alice)).status).toBe(200);
    expect((await from(app).login(alice)).status).toBe(200);
  });

  it('neither counts nor clears on a right password: 2 failures, a login, 2 failures, then 429', async () => {
    const ip = from(app, newIp());
    for (let i = 0; i < 2; i++) expect((await ip.login(newName(), 'guessed password')).status).toBe(401);
    for (let i = 0; i < 5; i++) expect((await ip.login(alice)).status).toBe(200);
    for (let i = 0; i < 2; i++) expect((await ip.login(newName(), 'guessed password')).status).toBe(401);
    expect((await ip.login(newName(), 'guessed password')).status).toBe(429);
  });

  it('judges at most 4 of 10 guesses over 10 usernames sent at once: four 401, six 429', async () => {
    const ip = from(app, newIp());
    const answers = await Promise.all(Array.from({ length: 10 }, () => ip.login(newName(), 'guessed password')));
    expect(answers.map((answer) => answer.status).sort()).toEqual([401, 401, 401, 401, 429, 429, 429, 429, 429, 429]);
  });
});

describe.each(profiles)('argon2 turns (%s profile, ARGON2_MAX_CONCURRENT=1, ARGON2_MAX_QUEUED=2)', (profile) => {
  const app = useApp(profile, { ARGON2_MAX_CONCURRENT: '1', ARGON2_MAX_QUEUED: '2' });

  /**
   * Holds the one turn while `requests` are sent, waits until `refused` of them have answered (those
   * found the wait full), then lets the turn go and answers every request's response.
   */
  async function whileTurnHeld(requests: Array<() => Promise<Answer>>, refused: number): Promise<Answer[]> {
    let release!: () => void;
    const held = app.services.passwords.inTurn(() => new Promise<void>((resolve) => (release = resolve)));
    let answered = 0;
    const answers = requests.map((send) => send().finally(() => (answered += 1)));
    await vi.waitFor(() => expect(answered).toBe(refused), { timeout: 10_000 });
    // the rest wait for a turn however long it is held
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(answered).toBe(refused);
    release();
    await held;
    return Promise.all(answers);
  }

  it('answers logins beyond the running one and the 2 waiting with 503 and Retry-After; the waiting ones succeed', async () => {
    const names = [newName(), newName(), newName(), newName(), newName()];
    for (const name of names) expect((await from(app).register(name)).status).toBe(201);
    const answers = await whileTurnHeld(names.map((name) => () => from(app).login(name)), 3);
    expect(answers.map((answer) => answer.status).sort()).toEqual([200, 200, 503, 503, 503]);
    for (const answer of answers.filter((a) => a.status === 503)) expectRefusal(answer, 503, 'unavailable', 5);
    expect((await from(app).login(names[0]!)).status).toBe(200);
  });

  it('answers registrations beyond the wait with 503 and creates no user for them', async () => {
    const names = [newName(), newName(), newName(), newName()];
    const answers = await whileTurnHeld(names.map((name) => () => from(app).register(name)), 2);
    expect(answers.map((answer) => answer.status).sort()).toEqual([201, 201, 503, 503]);
    for (const [i, answer] of answers.entries()) {
      const row = await app.services.users.findByUsername(names[i]!);
      expect(row === undefined, `${names[i]}: ${answer.status}`).toBe(answer.status === 503);
    }
  });
});

// Two API processes of one cluster (same database and Redis keys): the counters are Redis's, not a process's.
describe.skipIf(!profiles.includes('cluster'))('registrations per IP across two API processes (cluster profile)', () => {
  const nodeA = useApp('cluster', { REGISTER_MAX_PER_IP: '2', LOGIN_IP_MAX_FAILURES: '2' });
  let nodeB: RunningApp;
  beforeAll(async () => {
    const { DATA_DIR, DB_PRIMARY_URL, DB_REPLICA_URL, REDIS_KEY_PREFIX } = nodeA.services.config;
    nodeB = await startApp('cluster', {
      DATA_DIR, DB_PRIMARY_URL: DB_PRIMARY_URL!, DB_REPLICA_URL: DB_REPLICA_URL!, REDIS_KEY_PREFIX,
      REGISTER_MAX_PER_IP: '2', LOGIN_IP_MAX_FAILURES: '2',
    });
  });
  afterAll(async () => {
    await nodeB?.close();
  });

  it('counts registrations and failed logins from one IP on either process', async () => {
    const ip = newIp();
    expect((await from(nodeA, ip).register(newName())).status).toBe(201);
    expect((await from(nodeB, ip).register(newName())).status).toBe(201);
    expect((await from(nodeA, ip).register(newName())).status).toBe(429);
    expect((await from(nodeA, ip).login(newName(), 'guessed password')).status).toBe(401);
    expect((await from(nodeB, ip).login(newName(), 'guessed password')).status).toBe(401);
    expect((await from(nodeA, ip).login(newName(), 'guessed password')).status).toBe(429);
  });
});
