import type { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import {
  AbortMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { AppError } from '../errors.js';
import { contentMissing, type ArchiveStore, type ByteRange } from './blob-store.js';
import { S3UploadThread } from './s3-upload-thread.js';

export interface S3Options {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
}

export const PART_SIZE = 16 * 1024 * 1024;

/** The client settings as plain data, so the upload thread builds the same client. */
function clientConfig(options: S3Options) {
  return {
    endpoint: options.endpoint,
    region: options.region,
    credentials: { accessKeyId: options.accessKeyId, secretAccessKey: options.secretAccessKey },
    forcePathStyle: true,
    // Ceph RGW (Pacific) rejects streamed bodies signed with the SDK's default flexible checksums.
    requestChecksumCalculation: 'WHEN_REQUIRED' as const,
    responseChecksumValidation: 'WHEN_REQUIRED' as const,
    maxAttempts: 2,
  };
}

// A stopped or frozen gateway must answer "unavailable" within seconds, not hang a download: two
// attempts of at most 2 s to connect and 4 s of silence stay under 10 s. (socketTimeout is the idle
// timeout; @smithy's requestTimeout only logs a warning unless throwOnRequestTimeout is set.)
const HANDLER_OPTIONS = { connectionTimeout: 2000, socketTimeout: 4000 };

function createS3Client(options: S3Options): S3Client {
  return new S3Client({ ...clientConfig(options), requestHandler: new NodeHttpHandler(HANDLER_OPTIONS) });
}

/** The "unavailable" error both tiers give for a blob that is not there (GetObject says NoSuchKey, HeadObject NotFound). */
function missingAsUnavailable(error: unknown): never {
  const name = (error as Error).name;
  if (name === 'NoSuchKey' || name === 'NotFound') throw contentMissing();
  throw error;
}

/**
 * Blobs as objects in one bucket (the Ceph tier, through RGW's S3 API). Keys carry the `files` row id
 * and the tag of the local landing they were copied from (`blobs/<sha1>/<id>.<tag>`): a revived row
 * lands again under the same id, so the id alone would let a late delete of its previous object (gc
 * collecting it, its old transfer cleaning up) remove the new one.
 */
export class S3BlobStore implements ArchiveStore {
  readonly tier = 's3' as const;
  private readonly client: S3Client;
  /** Signs URLs for the public endpoint, when one is configured. */
  private readonly presignClient?: S3Client;
  private readonly uploads: S3UploadThread;

  constructor(
    options: S3Options,
    private readonly bucket: string,
    publicEndpoint?: string,
  ) {
    this.client = createS3Client(options);
    if (publicEndpoint) this.presignClient = createS3Client({ ...options, endpoint: publicEndpoint });
    this.uploads = new S3UploadThread({ clientConfig: clientConfig(options), handlerOptions: HANDLER_OPTIONS, partSize: PART_SIZE, queueSize: 4 });
  }

  /**
   * Multipart upload of a local file (parts streamed, never the whole blob in memory), verified without
   * reading it back: the SHA-1 of the bytes sent must equal `expected.sha1`, and RGW's ETag — the MD5 of
   * what it stored, or for multipart the MD5 of the part MD5s — must equal the one computed from the
   * same bytes as they were sent.
   */
  async store(filePath: string, key: string, expected: { size: number; sha1: string }): Promise<string> {
    const sent = await this.unavailableOnNetworkError(this.uploads.upload(filePath, this.bucket, key));
    const head = await this.unavailableOnNetworkError(this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key })));
    // the stored object's own ETag (RGW's CompleteMultipartUpload answer may carry none)
    const storedEtag = (head.ETag ?? '').replaceAll('"', '');
    if (sent.size !== expected.size || sent.sha1 !== expected.sha1) throw new Error(`local bytes of ${key} no longer match their sha1`);
    if (Number(head.ContentLength) !== sent.size || storedEtag !== sent.etag) {
      throw new Error(`S3 stored ${head.ContentLength} bytes with ETag ${storedEtag}; sent ${sent.size} bytes with ETag ${sent.etag}`);
    }
    return key;
  }

  async read(location: string, range?: ByteRange): Promise<Readable> {
    const response = await this.unavailableOnNetworkError(
      this.client.send(
        new GetObjectCommand({ Bucket: this.bucket, Key: location, Range: range ? `bytes=${range.start}-${range.end}` : undefined }),
      ),
    ).catch(missingAsUnavailable);
    // The idle timeout bounds the wait for an answer. Once the body streams, a reader applying
    // backpressure (a paused player, a slow client) may leave the socket quiet: that is no outage.
    const body = response.Body as Readable & { socket?: { setTimeout(ms: number): unknown } };
    body.socket?.setTimeout(0);
    return body;
  }

  async readRanges(location: string, ranges: ByteRange[]): Promise<Buffer[]> {
    return Promise.all(ranges.map(async (range) => buffer(await this.read(location, range))));
  }

  async stat(location: string): Promise<{ size: number }> {
    const head = await this.unavailableOnNetworkError(this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: location }))).catch(
      missingAsUnavailable,
    );
    return { size: Number(head.ContentLength) };
  }

  async abortUploadsStartedBefore(time: number): Promise<number> {
    let aborted = 0;
    let markers: { KeyMarker?: string; UploadIdMarker?: string } = {};
    for (;;) {
      const page = await this.unavailableOnNetworkError(
        this.client.send(new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: 'blobs/', ...markers })),
      );
      for (const upload of page.Uploads ?? []) {
        if (!upload.Key || !upload.UploadId || !upload.Initiated || upload.Initiated.getTime() >= time) continue;
        await this.unavailableOnNetworkError(
          this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: upload.Key, UploadId: upload.UploadId })),
        );
        aborted += 1;
      }
      if (!page.IsTruncated) return aborted;
      markers = { KeyMarker: page.NextKeyMarker, UploadIdMarker: page.NextUploadIdMarker };
    }
  }

  async remove(location: string): Promise<void> {
    await this.unavailableOnNetworkError(this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: location })));
  }

  async ping(): Promise<void> {
    await this.unavailableOnNetworkError(this.client.send(new HeadBucketCommand({ Bucket: this.bucket })));
  }

  /** A time-limited URL for the object, signed for the public endpoint; null when none is configured. */
  async presign(location: string, options: { expiresInSeconds: number; contentDisposition: string }): Promise<string | null> {
    if (!this.presignClient) return null;
    const command = new GetObjectCommand({ Bucket: this.bucket, Key: location, ResponseContentDisposition: options.contentDisposition });
    return getSignedUrl(this.presignClient, command, { expiresIn: options.expiresInSeconds });
  }

  async close(): Promise<void> {
    await this.uploads.close();
    this.client.destroy();
    this.presignClient?.destroy();
  }

  private async unavailableOnNetworkError<T>(promise: Promise<T>): Promise<T> {
    try {
      return await promise;
    } catch (error) {
      const e = error as { name?: string; code?: string; $metadata?: { httpStatusCode?: number } };
      const status = e.$metadata?.httpStatusCode;
      const network = ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'EPIPE'].includes(e.code ?? '') || e.name === 'TimeoutError';
      if (network || (status !== undefined && status >= 500)) {
        throw new AppError('storage_unavailable', undefined, {}, { 'Retry-After': '5' });
      }
      throw error;
    }
  }
}
