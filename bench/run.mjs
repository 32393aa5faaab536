// Upload benchmark of filestore against the physical limit (nginx WebDAV PUT) and the peer
// (@tus/server + tus-js-client), all on 127.0.0.1, one random file, one run, side by side.
//
//   node bench/run.mjs                  upload benchmark, embedded profile (make bench)
//   node bench/run.mjs instant-mariadb  instant upload (proof) on the cluster profile, MariaDB with
//                                       1,000,000 rows in `files` (scratch database filestore_bench), the
//                                       content on local disk, then again once the worker moved it to Ceph;
//                                       also: make bench BENCH_MODE=instant-mariadb
//   node bench/run.mjs tiers            local → Ceph transfer vs bare lib-storage, downloads per tier,
//                                       cluster profile (bench/tiers.mjs); make bench BENCH_MODE=tiers
//   node bench/run.mjs memory           the server's peak RSS per data path at 1 and 4 GiB, embedded, and the
//                                       S3 paths in the cluster profile (bench/memory.mjs); make bench BENCH_MODE=memory
//
// Needs dist/ (npx tsc -p tsconfig.json; make bench builds first). Environment:
//   BENCH_SIZE_MB=1024      size of the random file (e.g. 64 for a quick run)
//   BENCH_STAGES=a,b,c,d,e,f  stages of the upload benchmark to run
//   BENCH_CHUNK_MB=8 BENCH_INFLIGHT=4 BENCH_INSTANT_RUNS=1000 (with 50, p99 would be the maximum)
//   BENCH_INSTANT_WARMUP=200 (untimed instant uploads first: steady state, not the JIT's warm-up)
//   BENCH_WARMUP_MB=64      untimed upload each server takes before its timed one in (a)–(d) (0: none)
//   BENCH_ROUNDS=3          rounds of (a), (b) and (c), interleaved; each stage reports its median round
//   BENCH_IDLE_S=0          seconds filestore sits idle after its warm-up before each timed (c) upload
//   BENCH_CPU_PROF=1        run the filestore server under --cpu-prof; the profile is kept and summarised
//   BENCH_SERVER_WRAP="strace --seccomp-bpf -f -T -e trace=fdatasync -o FILE"  run the server under a tool
//   BENCH_SEED_ROWS=1000000 BENCH_KEEP_DB=1 (instant-mariadb: keep filestore_bench afterwards)
// Everything it starts (nginx, servers) is stopped and its temp files removed at the end, also on failure.
import { cleanup } from './lib.mjs';
import { instantMariadb } from './instant-mariadb.mjs';
import { uploadBenchmark } from './upload.mjs';

const MODE = process.argv[2] ?? 'upload';

const modes = {
  upload: uploadBenchmark,
  'instant-mariadb': instantMariadb,
  tiers: async () => (await import('./tiers.mjs')).tiersBenchmark(),
  memory: async () => (await import('./memory.mjs')).memoryBenchmark(),
};
let exitCode = 0;
try {
  const mode = modes[MODE];
  if (!mode) throw new Error(`unknown mode "${MODE}"; one of: ${Object.keys(modes).join(', ')}`);
  await mode();
} catch (error) {
  process.stderr.write(`\nbench: FAILED: ${error.stack ?? error}\n`);
  exitCode = 1;
} finally {
  await cleanup();
}
process.exit(exitCode);
