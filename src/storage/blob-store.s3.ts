import fs from 'node:fs';
import fsp from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { DeleteObjectCommand, GetObjectCommand, HeadBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { AppError } from '../errors.js';
import type { BlobStore, ByteRange } from './blob-store.js';

export interface S3Options {
  endpoint: string;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
}

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
  });
}

/** Blobs as objects `blobs/<sha1>` in one bucket (the Ceph tier, through RGW's S3 API). */
export class S3BlobStore implements BlobStore {
  readonly tier = 's3' as const;

  constructor(
    private readonly client: S3Client,
    private readonly bucket: string,
  ) {}

  async adopt(filePath: string, sha1: string): Promise<string> {
    const key = `blobs/${sha1}`;
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.bucket, Key: key, Body: fs.createReadStream(filePath) },
      partSize: 16 * 1024 * 1024,
      queueSize: 4,
    });
    await upload.done();
    await fsp.rm(filePath, { force: true });
    return key;
  }

  async read(location: string, range?: ByteRange): Promise<Readable> {
    const response = await this.client
      .send(
        new GetObjectCommand({
          Bucket: this.bucket,
          Key: location,
          Range: range ? `bytes=${range.start}-${range.end}` : undefined,
        }),
      )
      .catch((error: unknown) => {
        // the same answer as the local tier gives for a missing blob
        if ((error as { name?: unknown } | null)?.name === 'NoSuchKey') throw new AppError('unavailable', 'The stored content is missing.');
        throw error;
      });
    return response.Body as Readable;
  }

  async remove(location: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: location }));
  }

  async ping(): Promise<void> {
    await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
  }
}
