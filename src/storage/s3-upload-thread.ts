import { createRequire } from 'node:module';
import { Thread } from '../thread.js';

const require = createRequire(import.meta.url);

/** What was sent: its SHA-1, its size, and the ETag S3 must report for exactly those bytes. */
export interface SentDigest {
  sha1: string;
  size: number;
  etag: string;
}

export interface S3UploadSettings {
  /** Plain S3Client configuration (it crosses to the thread as data). */
  clientConfig: object;
  handlerOptions: { connectionTimeout: number; socketTimeout: number };
  partSize: number;
  queueSize: number;
}

/**
 * Multipart uploads of local files on a thread of their own. Every part is a fresh 16 MiB buffer
 * (lib-storage gathers a stream into parts), and each such allocation makes V8 mark its whole heap:
 * on the worker process's heap (queues, database, logging) that marking cost more CPU than the
 * upload itself. The thread's isolate holds little more than the S3 client, so its marking is cheap,
 * and the digests run beside the event loop instead of on it.
 */
export class S3UploadThread {
  private readonly thread: Thread;

  constructor(settings: S3UploadSettings) {
    const modules = {
      s3: require.resolve('@aws-sdk/client-s3'),
      storage: require.resolve('@aws-sdk/lib-storage'),
      http: require.resolve('@smithy/node-http-handler'),
    };
    this.thread = new Thread(THREAD_SOURCE, { ...settings, modules });
  }

  /** Streams the file at `filePath` to `bucket/key`; network and S3 errors keep their name, code and status. */
  upload(filePath: string, bucket: string, key: string): Promise<SentDigest> {
    return this.thread.request<SentDigest>({ filePath, bucket, key });
  }

  close(): Promise<void> {
    return this.thread.close();
  }
}

/** The upload thread (plain CommonJS; modules by absolute path, resolved by the parent). */
const THREAD_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const fs = require('node:fs');
const { Transform } = require('node:stream');
const { pipeline } = require('node:stream/promises');
const { S3Client } = require(workerData.modules.s3);
const { Upload } = require(workerData.modules.storage);
const { NodeHttpHandler } = require(workerData.modules.http);

const { partSize, queueSize } = workerData;
const client = new S3Client({ ...workerData.clientConfig, requestHandler: new NodeHttpHandler(workerData.handlerOptions) });
// Over plain http the SDK signs each part's SHA-256 (about 0.8 CPU s per GiB). The ETag comparison
// after the upload already proves what S3 stored, so the bodies go unsigned (the headers stay signed).
client.middlewareStack.add(
  (next) => (args) => {
    if (args.request && args.request.headers) args.request.headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD';
    return next(args);
  },
  { step: 'build', name: 'unsignedPayload' },
);
const READ_SIZE = 1024 * 1024;

// SHA-1 and size of a byte stream, and its S3 ETag: the MD5 of a single part, or the MD5 of the
// part MD5s followed by "-N", cut exactly where lib-storage cuts the parts
class Digest {
  constructor() {
    this.sha1 = createHash('sha1');
    this.part = createHash('md5');
    this.partBytes = 0;
    this.partDigests = [];
    this.size = 0;
  }

  update(chunk) {
    this.sha1.update(chunk);
    this.size += chunk.length;
    for (let offset = 0; offset < chunk.length; ) {
      // a full part closes only when more bytes follow
      if (this.partBytes === partSize) {
        this.partDigests.push(this.part.digest());
        this.part = createHash('md5');
        this.partBytes = 0;
      }
      const take = Math.min(partSize - this.partBytes, chunk.length - offset);
      this.part.update(chunk.subarray(offset, offset + take));
      this.partBytes += take;
      offset += take;
    }
  }

  finish() {
    this.partDigests.push(this.part.digest());
    const etag = this.partDigests.length === 1
      ? this.partDigests[0].toString('hex')
      : createHash('md5').update(Buffer.concat(this.partDigests)).digest('hex') + '-' + this.partDigests.length;
    return { sha1: this.sha1.digest('hex'), size: this.size, etag };
  }
}

async function upload({ filePath, bucket, key }) {
  const digest = new Digest();
  const tee = new Transform({
    transform(chunk, _encoding, done) {
      digest.update(chunk);
      done(null, chunk);
    },
  });
  const sending = new Upload({ client, params: { Bucket: bucket, Key: key, Body: tee }, partSize, queueSize, leavePartsOnError: false });
  // a failed upload stops reading the file (and closes it) instead of leaving the read stalled
  const sent = sending.done().catch((error) => {
    tee.destroy(error);
    throw error;
  });
  await Promise.all([sent, pipeline(fs.createReadStream(filePath, { highWaterMark: READ_SIZE }), tee)]);
  return digest.finish();
}

parentPort.on('message', (message) => {
  upload(message).then(
    (result) => parentPort.postMessage({ request: message.request, result }),
    (error) => parentPort.postMessage({
      request: message.request,
      error: {
        message: String(error && error.message),
        name: error && error.name,
        code: error && error.code,
        $metadata: error && error.$metadata ? { httpStatusCode: error.$metadata.httpStatusCode } : undefined,
      },
    }),
  );
});
`;
