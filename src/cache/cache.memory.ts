import type { Cache } from './cache.js';

interface Window {
  count: number;
  expiresAt: number;
}

/** The embedded profile's cache: one process, so a Map with expiry times is the whole truth. */
export class MemoryCache implements Cache {
  private readonly windows = new Map<string, Window>();

  async take(key: string, limit: number, windowSeconds: number) {
    // check and count with no await in between: no other request can run between them
    const now = Date.now();
    const window = this.live(key, now);
    if (window && window.count >= limit) return { taken: false, retryAfterSeconds: secondsLeft(window, now) };
    return { taken: true, retryAfterSeconds: secondsLeft(this.add(key, windowSeconds, now), now) };
  }

  async giveBack(key: string) {
    const window = this.live(key, Date.now());
    if (window && --window.count <= 0) this.windows.delete(key);
  }

  async forget(key: string) {
    this.windows.delete(key);
  }

  async ping() {}

  async close() {
    this.windows.clear();
  }

  private live(key: string, now: number): Window | undefined {
    const window = this.windows.get(key);
    return window && window.expiresAt > now ? window : undefined;
  }

  private add(key: string, windowSeconds: number, now: number): Window {
    let window = this.live(key, now);
    if (!window) {
      window = { count: 0, expiresAt: now + windowSeconds * 1000 };
      this.windows.set(key, window);
    }
    window.count += 1;
    this.sweep(now);
    return window;
  }

  private sweep(now: number): void {
    if (this.windows.size < 10_000) return;
    for (const [key, window] of this.windows) if (window.expiresAt <= now) this.windows.delete(key);
  }
}

const secondsLeft = (window: Window, now: number): number => Math.ceil((window.expiresAt - now) / 1000);
