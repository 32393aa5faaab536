/** Short-lived shared counters (login and proof throttling). Memory in embedded, Redis in cluster. */
export interface Cache {
  /**
   * Takes one of `limit` attempts in `key`'s window (the first one taken starts it), checking and
   * counting in one atomic step, so requests in parallel can never take more than `limit` between them.
   * `taken: false` once all are taken; `retryAfterSeconds` is what is left of the window.
   */
  take(key: string, limit: number, windowSeconds: number): Promise<{ taken: boolean; retryAfterSeconds: number }>;
  /** Hands back an attempt `take` gave that turned out not to count; the window ends with its last attempt. */
  giveBack(key: string): Promise<void>;
  forget(key: string): Promise<void>;
  ping(): Promise<void>;
  close(): Promise<void>;
}
