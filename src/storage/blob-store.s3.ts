import { createHash } from 'node:crypto';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { DeleteObjectCommand, GetObjectCommand, HeadBucketCommand, HeadObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { AppError } from '../errors.js';
import type { ArchiveStore, ByteRange } from './blob-store.js';

export interface S3Options {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
}

export const PART_SIZE = 16 * 1024 * 1024;

export function createS3Client(options: S3Options): S3Client {
  return new S3Client({
    endpoint: options.endpoint,
    region: options.region,
    credentials: { accessKeyId: options.accessKeyId, secretAccessKey: options.secretAccessKey },
    forcePathStyle: true,
    // Ceph RGW (Pacific) rejects streamed bodies signed with the SDK's default flexible checksums.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts: 2,
    // A stopped or frozen gateway must answer "unavailable" within seconds, not hang a download:
    // two attempts of at most 2 s to connect and 4 s of silence stay under 10 s. (socketTimeout is the
    // idle timeout; @smithy's requestTimeout only logs a warning unless throwOnRequestTimeout is set.)
    requestHandler: new NodeHttpHandler({ connectionTimeout: 2000, socketTimeout: 4000 }),
  });
}

/**
 * Blobs as objects in one bucket (the Ceph tier, through RGW's S3 API). Keys carry the `files` row id
 * (`blobs/<sha1>/<id>`), so removing an old object never hits a newer copy of the same content.
 */
export class S3BlobStore implements ArchiveStore {
  readonly tier = 's3' as const;

  constructor(
    private readonly client: S3Client,
    private readonly bucket: string,
    private readonly presignClient?: S3Client,
  ) {}

  /**
   * Multipart upload (parts streamed, never the whole blob in memory), verified without reading it back:
   * the SHA-1 of the bytes sent must equal `expected.sha1`, and RGW's ETag — the MD5 of what it stored, or
   * for multipart the MD5 of the part MD5s — must equal the one computed here from the same bytes.
   */
  async store(body: Readable, key: string, expected: { size: number; sha1: string }): Promise<string> {
    const digest = new UploadDigest(PART_SIZE);
    const tee = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        digest.update(chunk);
        done(null, chunk);
      },
    });
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.bucket, Key: key, Body: tee },
      partSize: PART_SIZE,
      queueSize: 4,
      leavePartsOnError: false,
    });
    await Promise.all([this.unavailableOnNetworkError(upload.done()), pipeline(body, tee)]);
    const { sha1, size, etag } = digest.finish();
    const head = await this.unavailableOnNetworkError(this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key })));
    // the stored object's own ETag (RGW's CompleteMultipartUpload answer may carry none)
    const storedEtag = (head.ETag ?? '').replaceAll('"', '');
    if (size !== expected.size || sha1 !== expected.sha1) throw new Error(`local bytes of ${key} no longer match their sha1`);
    if (Number(head.ContentLength) !== size || storedEtag !== etag) {
      throw new Error(`S3 stored ${head.ContentLength} bytes with ETag ${storedEtag}; sent ${size} bytes with ETag ${etag}`);
    }
    return key;
  }

  async read(location: string, range?: ByteRange): Promise<Readable> {
    const response = await this.unavailableOnNetworkError(
      this.client.send(
        new GetObjectCommand({ Bucket: this.bucket, Key: location, Range: range ? `bytes=${range.start}-${range.end}` : undefined }),
      ),
    ).catch((error: unknown) => {
      if ((error as Error).name === 'NoSuchKey') throw new AppError('unavailable', 'The stored content is missing.');
      throw error;
    });
    // The idle timeout bounds the wait for an answer. Once the body streams, a reader applying
    // backpressure (a paused player, a slow client) may leave the socket quiet: that is no outage.
    const body = response.Body as Readable & { socket?: { setTimeout(ms: number): unknown } };
    body.socket?.setTimeout(0);
    return body;
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

/** SHA-1, size and the S3 ETag (single-part MD5, or MD5 of part MD5s + "-N") of a byte stream. */
class UploadDigest {
  private readonly sha1 = createHash('sha1');
  private part = createHash('md5');
  private partBytes = 0;
  private readonly partDigests: Buffer[] = [];
  private size = 0;

  constructor(private readonly partSize: number) {}

  update(chunk: Buffer): void {
    this.sha1.update(chunk);
    this.size += chunk.length;
    let offset = 0;
    while (offset < chunk.length) {
      // a full part closes only when more bytes follow, exactly as lib-storage cuts them
      if (this.partBytes === this.partSize) this.closePart();
      const take = Math.min(this.partSize - this.partBytes, chunk.length - offset);
      this.part.update(chunk.subarray(offset, offset + take));
      this.partBytes += take;
      offset += take;
    }
  }

  finish(): { sha1: string; size: number; etag: string } {
    this.partDigests.push(this.part.digest());
    const etag =
      this.partDigests.length === 1
        ? this.partDigests[0]!.toString('hex')
        : `${createHash('md5').update(Buffer.concat(this.partDigests)).digest('hex')}-${this.partDigests.length}`;
    return { sha1: this.sha1.digest('hex'), size: this.size, etag };
  }

  private closePart(): void {
    this.partDigests.push(this.part.digest());
    this.part = createHash('md5');
    this.partBytes = 0;
  }
}
