import type { RequestHandler } from 'express';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { JobEvent, QueueStats } from '../jobs/job-queue.js';

/** One registry per app instance, so two apps in one process (tests) never share counters. */
export class Metrics {
  readonly registry = new Registry();
  private readonly httpDuration = new Histogram({
    name: 'filestore_http_request_duration_seconds',
    help: 'HTTP request durations by method, route and status',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [this.registry],
  });
  private readonly uploadedBytes = new Counter({
    name: 'filestore_uploaded_bytes_total',
    help: 'Bytes received in file uploads',
    registers: [this.registry],
  });
  private readonly jobDuration = new Histogram({
    name: 'filestore_job_duration_seconds',
    help: 'Background job attempts by queue and outcome',
    labelNames: ['queue', 'outcome'] as const,
    buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300],
    registers: [this.registry],
  });
  private readonly jobFailures = new Counter({
    name: 'filestore_job_failures_total',
    help: 'Failed background job attempts by queue',
    labelNames: ['queue'] as const,
    registers: [this.registry],
  });

  constructor(queueStats?: () => Promise<QueueStats>) {
    collectDefaultMetrics({ register: this.registry });
    if (queueStats) {
      new Gauge({
        name: 'filestore_queue_jobs',
        help: 'Jobs per queue and state (waiting, active, failed)',
        labelNames: ['queue', 'state'] as const,
        registers: [this.registry],
        async collect() {
          const stats = await queueStats();
          for (const [queue, counts] of Object.entries(stats.queues)) {
            for (const [state, count] of Object.entries(counts)) this.set({ queue, state }, count);
          }
        },
      });
    }
  }

  countUploadedBytes = (count: number): void => {
    this.uploadedBytes.inc(count);
  };

  observeJob = (event: JobEvent): void => {
    this.jobDuration.observe({ queue: event.queue, outcome: event.outcome }, event.seconds);
    if (event.outcome === 'failed') this.jobFailures.inc({ queue: event.queue });
  };

  /** Times every request; the route label is the matched pattern (never the raw URL, to bound cardinality). */
  middleware(): RequestHandler {
    return (req, res, next) => {
      const stop = this.httpDuration.startTimer();
      // The full pattern is taken when the router sets req.route: by 'finish' a request that failed has
      // left its router, whose baseUrl is gone ('/files/:id' instead of '/api/files/:id').
      let matched: typeof req.route;
      let route = 'unmatched';
      Object.defineProperty(req, 'route', {
        configurable: true,
        enumerable: true,
        get: () => matched,
        set: (value: typeof req.route) => {
          matched = value;
          if (value?.path) route = `${req.baseUrl}${String(value.path)}`;
        },
      });
      res.on('finish', () => {
        stop({ method: req.method, route, status: String(res.statusCode) });
      });
      next();
    };
  }
}
