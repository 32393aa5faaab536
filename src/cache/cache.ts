/** Short-lived shared counters (login throttling now; more later). Memory in embedded, Redis in cluster. */
export interface Cache {
  /** Adds one to `key`, starting a window of `windowSeconds` on the first hit; returns the new count. */
  hit(key: string, windowSeconds: number): Promise<{ count: number; retryAfterSeconds: number }>;
  peek(key: string): Promise<{ count: number; retryAfterSeconds: number }>;
  forget(key: string): Promise<void>;
  ping(): Promise<void>;
  close(): Promise<void>;
}
