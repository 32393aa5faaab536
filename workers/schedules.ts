import type { Config } from '../src/config.js';
import type { JobEvent, JobQueue } from '../src/jobs/job-queue.js';
import type { Services } from '../src/wiring.js';
import { buildProcessors } from './processors/index.js';

/** The recurring jobs: collection every GC_INTERVAL_SECONDS, and a verification sweep. */
export async function scheduleRecurringJobs(jobs: JobQueue, config: Config): Promise<void> {
  await jobs.schedule('gc', {}, config.GC_INTERVAL_SECONDS * 1000);
  // the sweep only queues blobs whose last check is older than VERIFY_INTERVAL_SECONDS; looking hourly is cheap
  await jobs.schedule('verify', { sweep: true }, Math.min(config.VERIFY_INTERVAL_SECONDS, 3600) * 1000);
}

/** Consumes every queue in this process and registers the recurring jobs. */
export async function runJobs(services: Services, onJob?: (event: JobEvent) => void): Promise<void> {
  await services.jobs.process(buildProcessors(services), onJob);
  await scheduleRecurringJobs(services.jobs, services.config);
}
