import http from 'node:http';
import { pino } from 'pino';
import { loadConfigOrExit } from '../src/config.js';
import { Metrics } from '../src/http/metrics.js';
import { openServices } from '../src/wiring.js';
import { runJobs } from './schedules.js';

/** The cluster profile's worker process: consumes the transfer, verify and gc queues (BullMQ). */
async function main(): Promise<void> {
  const config = loadConfigOrExit('filestore-worker');
  if (config.FILESTORE_PROFILE !== 'cluster') {
    process.stderr.write('filestore-worker: the embedded profile runs its jobs inside the API process; set FILESTORE_PROFILE=cluster\n');
    process.exit(1);
  }
  const logger = pino({ level: config.LOG_LEVEL }).child({ role: 'worker' });
  const services = await openServices(config, logger, 'worker');
  // BullMQ waits for Redis without end: a worker started while it is down hung silently, where one
  // started while MariaDB is down fails. openServices has given Redis REDIS_TIMEOUT_SECONDS to answer.
  await services.healthChecks.redis!().catch((error: Error) => {
    process.stderr.write(`filestore-worker: failed to start: Redis unreachable (REDIS_URL): ${error.message}\n`);
    process.exit(1);
  });
  const metrics = new Metrics(() => services.jobs.stats());
  await runJobs(services, metrics.observeJob);
  const metricsServer = http
    .createServer((req, res) => {
      if (req.url !== '/metrics') return void res.writeHead(404).end();
      // the queue gauge asks Redis: while it is down the scrape fails, not the worker (an unhandled rejection)
      metrics.registry.metrics().then(
        (body) => res.writeHead(200, { 'Content-Type': metrics.registry.contentType }).end(body),
        (error: Error) => res.writeHead(503, { 'Content-Type': 'text/plain' }).end(`metrics unavailable: ${error.message}\n`),
      );
    })
    // without this a taken port is an unhandled 'error' event: a stack trace instead of one line
    .once('error', (error: Error) => {
      process.stderr.write(`filestore-worker: cannot listen on ${config.HOST}:${config.WORKER_METRICS_PORT} (WORKER_METRICS_PORT): ${error.message}\n`);
      process.exit(1);
    })
    .listen(config.WORKER_METRICS_PORT, config.HOST);
  logger.info({ metricsPort: config.WORKER_METRICS_PORT }, 'filestore worker running');
  const shutdown = (signal: string) => {
    logger.info({ signal }, 'worker shutting down');
    metricsServer.close();
    // closing the queue lets active jobs finish; a job cut short by a kill is retried (processors are idempotent)
    void services.close().then(() => process.exit(0));
    setTimeout(() => process.exit(0), 15_000).unref();
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

main().catch((error: unknown) => {
  process.stderr.write(`filestore-worker: failed to start: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
