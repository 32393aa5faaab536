// The benchmark's settings, read once from the environment (see run.mjs), and the brief's targets.
import { MiB } from './lib.mjs';

export const SIZE = Math.round(Number(process.env.BENCH_SIZE_MB ?? 1024) * MiB);
export const CHUNK = Math.round(Number(process.env.BENCH_CHUNK_MB ?? 8) * MiB);
export const INFLIGHT = Number(process.env.BENCH_INFLIGHT ?? 4);
export const INSTANT_RUNS = Number(process.env.BENCH_INSTANT_RUNS ?? 1000);
// The first few hundred uploads after a start run while V8 still compiles the hot paths: their slow
// ones made most of a cold series' p99 (13 of the 21 slowest of 1000 fell in its first 3 s)
export const INSTANT_WARMUP = Number(process.env.BENCH_INSTANT_WARMUP ?? 200);
// Each server under test takes one untimed upload of this size before its timed one, as a server that
// has run a while has. A 1 GiB chunked upload to a fresh filestore ran about 7% slower while its main
// thread and V8's compiler threads compiled the hot paths: medians 721 against 778 MiB/s over 5
// alternating pairs, 678 against 724 over four `make bench` runs each
export const WARMUP_MB = Number(process.env.BENCH_WARMUP_MB ?? 64);
// Seconds the filestore server sits idle after its warm-up, before the timed upload of (c): a server in
// use idles between uploads, and after ~30 s V8's memory reducer changes how it collects (scripts/start-api.sh)
export const IDLE_S = Number(process.env.BENCH_IDLE_S ?? 0);
// (a), (b) and (c) run this many rounds, interleaved, and each reports its median round: on these VMs a
// stage now and then ran at half speed with every process on the machine, the client included, using
// twice its usual CPU (the host reclaiming memory), and one such round decided a single run's ratios
export const ROUNDS = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 3));
export const STAGES = new Set((process.env.BENCH_STAGES ?? 'a,b,c,d,e,f').split(',').map((s) => s.trim()));
export const CPU_PROF = process.env.BENCH_CPU_PROF === '1';
export const PASSWORD = 'bench-password-1';
export const log = (message) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);

// targets (from the brief)
export const TARGET_VS_NGINX = 0.8;
export const TARGET_VS_PEER = 1.5;
export const TARGET_INSTANT_MS = 20;
export const TARGET_RSS_BYTES = 200e6;
