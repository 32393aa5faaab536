// Imported first by src/main.ts (the API process): libuv reads this once, when its thread pool first
// starts. Its default of 4 threads is shared by every upload's writes, the hashing thread's read-ahead,
// flushes (each holds a thread until the disk has the bytes), argon2 and DNS; with 4 chunks in flight
// the hash's reads queued behind the writes.
process.env.UV_THREADPOOL_SIZE ??= '16';
