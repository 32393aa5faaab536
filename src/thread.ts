import { Worker } from 'node:worker_threads';

/** What a thread answers to a request: `result` on success, or `error` (plain data: errors don't cross threads). */
interface Reply {
  request: number;
  result?: unknown;
  error?: { message: string } & Record<string, unknown>;
}

/**
 * One lazily started worker thread running plain CommonJS source (so it runs the same from sources under
 * test and from dist), with request/reply over its port. The thread is unref'd: it never keeps a process
 * alive. If it dies, pending requests fail and the next request starts a fresh one.
 */
export class Thread {
  private worker: Worker | null = null;
  private readonly waiting = new Map<number, { resolve: (result: unknown) => void; reject: (error: Error) => void }>();
  private nextRequest = 0;

  constructor(
    private readonly source: string,
    private readonly workerData?: unknown,
  ) {}

  /** A message that expects no answer. */
  post(message: object): void {
    this.start().postMessage(message);
  }

  /** A message the thread answers with `{request, result}` or `{request, error}`. */
  request<T>(message: object): Promise<T> {
    const request = this.nextRequest++;
    return new Promise<T>((resolve, reject) => {
      this.waiting.set(request, { resolve: resolve as (result: unknown) => void, reject });
      this.start().postMessage({ ...message, request });
    });
  }

  /** Posts only to a running thread (nothing to tell a thread that never started). */
  postIfRunning(message: object): void {
    this.worker?.postMessage(message);
  }

  /** Stops the thread; requests still pending fail. */
  async close(): Promise<void> {
    await this.worker?.terminate();
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(this.source, { eval: true, workerData: this.workerData });
    worker.unref();
    worker.on('message', (reply: Reply) => {
      const waiter = this.waiting.get(reply.request);
      this.waiting.delete(reply.request);
      if (!reply.error) return waiter?.resolve(reply.result);
      const { message, ...fields } = reply.error;
      waiter?.reject(Object.assign(new Error(message), fields));
    });
    const lost = (error: Error) => {
      if (this.worker !== worker) return;
      this.worker = null;
      for (const waiter of this.waiting.values()) waiter.reject(error);
      this.waiting.clear();
    };
    worker.on('error', lost);
    worker.on('exit', (code) => lost(new Error(`worker thread exited with code ${code}`)));
    this.worker = worker;
    return worker;
  }
}
