import type { Cache } from './cache.js';

/** The embedded profile's cache: one process, so a Map with expiry times is the whole truth. */
export class MemoryCache implements Cache {
  private readonly windows = new Map<string, { count: number; expiresAt: number }>();

  async hit(key: string, windowSeconds: number) {
    const now = Date.now();
    let window = this.windows.get(key);
    if (!window || window.expiresAt <= now) {
      window = { count: 0, expiresAt: now + windowSeconds * 1000 };
      this.windows.set(key, window);
    }
    window.count += 1;
    this.sweep(now);
    return { count: window.count, retryAfterSeconds: Math.ceil((window.expiresAt - now) / 1000) };
  }

  async peek(key: string) {
    const now = Date.now();
    const window = this.windows.get(key);
    if (!window || window.expiresAt <= now) return { count: 0, retryAfterSeconds: 0 };
    return { count: window.count, retryAfterSeconds: Math.ceil((window.expiresAt - now) / 1000) };
  }

  async forget(key: string) {
    this.windows.delete(key);
  }

  async ping() {}

  async close() {
    this.windows.clear();
  }

  private sweep(now: number): void {
    if (this.windows.size < 10_000) return;
    for (const [key, window] of this.windows) if (window.expiresAt <= now) this.windows.delete(key);
  }
}
