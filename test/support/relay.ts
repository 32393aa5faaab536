import net from 'node:net';

/**
 * A TCP relay in front of a real service (Redis, MariaDB), so a test can take the service away from one
 * app without stopping it for everyone else: `cut()` resets every open connection and every new one
 * (the service is down), `freeze()` keeps connections open but carries nothing (the service hangs),
 * `delay(ms)` carries every byte `ms` late each way (a slow network: a test can act between two
 * statements of one request), `restore()` carries bytes again at once.
 */
export interface Relay {
  /** The service's URL with host and port replaced by the relay's. */
  url: string;
  cut(): void;
  freeze(): void;
  delay(ms: number): void;
  restore(): void;
  /** Connections the relay has accepted so far (a client that began to talk to the service). */
  accepted(): number;
  close(): Promise<void>;
}

type Mode = 'open' | 'cut' | 'frozen';

export async function startRelay(serviceUrl: string): Promise<Relay> {
  const target = new URL(serviceUrl);
  const targetPort = Number(target.port);
  let mode: Mode = 'open';
  let delayMs = 0;
  const pairs = new Set<{ client: net.Socket; upstream: net.Socket }>();
  let accepted = 0;

  const server = net.createServer((client) => {
    accepted += 1;
    if (mode === 'cut') return void client.resetAndDestroy();
    const upstream = net.connect(targetPort, target.hostname);
    const pair = { client, upstream };
    pairs.add(pair);
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    // frozen: bytes are read and dropped, so neither side sees an error, only silence
    // timers of one duration fire in the order they were set, so delayed bytes keep their order
    const carry = (to: net.Socket) => (bytes: Buffer) => {
      if (mode !== 'open') return;
      if (delayMs === 0) to.write(bytes);
      else setTimeout(() => mode === 'open' && !to.destroyed && to.write(bytes), delayMs);
    };
    client.on('data', carry(upstream));
    upstream.on('data', carry(client));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  const url = new URL(serviceUrl);
  url.hostname = '127.0.0.1';
  url.port = String(port);

  return {
    url: url.toString(),
    accepted: () => accepted,
    cut() {
      mode = 'cut';
      for (const { client, upstream } of pairs) {
        client.resetAndDestroy();
        upstream.destroy();
      }
      pairs.clear();
    },
    freeze() {
      mode = 'frozen';
    },
    delay(ms) {
      delayMs = ms;
    },
    restore() {
      // a frozen connection lost bytes in the middle of its protocol: it cannot carry on
      if (mode === 'frozen') for (const { client, upstream } of pairs) (client.resetAndDestroy(), upstream.destroy());
      mode = 'open';
      delayMs = 0;
    },
    async close() {
      for (const { client, upstream } of pairs) (client.destroy(), upstream.destroy());
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
