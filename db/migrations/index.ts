import type { Knex } from 'knex';
import * as spine from './001_spine.js';
import * as uploads from './002_uploads.js';
import * as tiers from './003_tiers.js';
import * as openSessionsIndex from './004_open_sessions_index.js';
import * as verifiedSha1 from './005_verified_sha1.js';
import * as localBlobsIndex from './006_local_blobs_index.js';

/** Migrations in order; listed statically so the same list runs from sources (tsx) and from dist. */
export const migrations: ReadonlyArray<{ name: string; module: Knex.Migration }> = [
  { name: '001_spine', module: spine },
  { name: '002_uploads', module: uploads },
  { name: '003_tiers', module: tiers },
  { name: '004_open_sessions_index', module: openSessionsIndex },
  { name: '005_verified_sha1', module: verifiedSha1 },
  { name: '006_local_blobs_index', module: localBlobsIndex },
];
