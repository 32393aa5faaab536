import './threadpool.js';
import type { Server } from 'node:http';
import { pino } from 'pino';
import { applyTimeouts, buildApp } from './app.js';
import { loadConfigOrExit } from './config.js';
import { Metrics } from './http/metrics.js';
import { openServices } from './wiring.js';
import { runJobs } from '../workers/schedules.js';

async function main(): Promise<void> {
  const config = loadConfigOrExit('filestore');
  const logger = pino({ level: config.LOG_LEVEL });
  const services = await openServices(config, logger);
  const metrics = new Metrics(() => services.jobs.stats());
  if (config.FILESTORE_PROFILE === 'embedded') {
    // one process: the same processors the cluster's workers run, persisted in SQLite
    await runJobs(services, metrics.observeJob);
  }
  // express 5 hands a failed listen (port taken) to this callback as well, instead of an 'error' event
  const server: Server = buildApp(services, metrics).listen(config.PORT, config.HOST, (error?: Error) => {
    if (error) {
      process.stderr.write(`filestore: cannot listen on ${config.HOST}:${config.PORT} (PORT): ${error.message}\n`);
      process.exit(1);
    }
    logger.info({ port: config.PORT, host: config.HOST, profile: config.FILESTORE_PROFILE, dataDir: config.DATA_DIR }, 'filestore listening');
  });
  applyTimeouts(server, config);
  const shutdown = (signal: string) => {
    logger.info({ signal }, 'shutting down');
    server.close(() => void services.close().then(() => process.exit(0)));
    setTimeout(() => process.exit(0), 10_000).unref();
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

main().catch((error: unknown) => {
  process.stderr.write(`filestore: failed to start: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
