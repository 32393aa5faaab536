import { randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { availableProfiles, useApp } from '../support/app.js';
import { newUser, sha1 } from '../support/files.js';
import { createTusUpload, tusPatch, tusRequest } from '../support/tus.js';
import { MiB } from '../support/uploads.js';
import { downloadSha1, fileExists, runGc } from '../support/workers.js';

/**
 * What a kill leaves of a tus upload under DATA_DIR/tus that @tus/file-store's pairing of data files with
 * parseable records never sees: a data file whose record was never written (creation writes the file
 * first) or was cut short, a record whose file an expiry removed just before. gc's expiry sweep removes
 * them once older than UPLOAD_TTL_SECONDS by mtime; a younger one, and any upload with a readable record
 * younger than the TTL by its creation date, stays. Each leftover is made from a real upload, cut the
 * way a kill leaves it.
 */
const profiles = await availableProfiles('tus leftovers');
const TTL_SECONDS = 60;

describe.each(profiles)('gc removes tus leftovers without a readable record (%s profile)', (profile) => {
  const app = useApp(profile, { UPLOAD_TTL_SECONDS: String(TTL_SECONDS) });

  it('removes those older than the upload TTL, keeps younger ones and every live upload, which completes with its bytes', { timeout: 60_000 }, async () => {
    const alice = await newUser(app);
    const tusDir = path.join(app.dataDir, 'tus');
    const fileOf = (url: string) => path.join(tusDir, path.basename(new URL(url).pathname));
    const recordOf = (url: string) => `${fileOf(url)}.json`;
    const upload = async (name: string, size = 1000) => {
      const url = await createTusUpload(app.baseUrl, alice, size, { filename: name });
      expect((await tusPatch(alice, url, 0, randomBytes(100))).status).toBe(204);
      return url;
    };
    const longAgo = new Date(Date.now() - 2 * TTL_SECONDS * 1000);
    const age = (...files: string[]) => Promise.all(files.map((file) => fsp.utimes(file, longAgo, longAgo)));

    /** One leftover of each kind; `old` ages its files past the TTL. */
    const leaveLeftovers = async (old: boolean): Promise<Record<string, string[]>> => {
      const noRecord = await upload('no-record.bin');
      await fsp.rm(recordOf(noRecord));
      const emptyRecord = await upload('empty-record.bin');
      await fsp.truncate(recordOf(emptyRecord), 0);
      const cutRecord = await upload('cut-record.bin');
      await fsp.truncate(recordOf(cutRecord), (await fsp.stat(recordOf(cutRecord))).size >> 1);
      const noFile = await upload('no-file.bin');
      await fsp.rm(fileOf(noFile));
      const noFileRecord = JSON.parse(await fsp.readFile(recordOf(noFile), 'utf8'));
      if (old) await fsp.writeFile(recordOf(noFile), JSON.stringify({ ...noFileRecord, creation_date: longAgo.toISOString() }));
      const leftovers = {
        noRecord: [fileOf(noRecord)],
        emptyRecord: [fileOf(emptyRecord), recordOf(emptyRecord)],
        cutRecord: [fileOf(cutRecord), recordOf(cutRecord)],
        noFile: [recordOf(noFile)],
      };
      if (old) await age(...Object.values(leftovers).flat());
      return leftovers;
    };
    /** Whether each file of each leftover is there. */
    const presence = async (leftovers: Record<string, string[]>) =>
      Object.fromEntries(await Promise.all(Object.entries(leftovers).map(async ([kind, files]) => [kind, await Promise.all(files.map(fileExists))])));

    const old = await leaveLeftovers(true);
    const young = await leaveLeftovers(false);
    // under way, its files untouched for longer than the TTL: its creation date is what counts
    const liveBytes = randomBytes(2 * MiB);
    const live = await createTusUpload(app.baseUrl, alice, liveBytes.length, { filename: 'live.bin' });
    expect((await tusPatch(alice, live, 0, liveBytes.subarray(0, MiB))).status).toBe(204);
    await age(fileOf(live), recordOf(live));
    // a creation caught between writing its data file and its record
    const creatingBytes = randomBytes(MiB + 7);
    const creating = await createTusUpload(app.baseUrl, alice, creatingBytes.length, { filename: 'creating.bin' });
    const creatingRecord = await fsp.readFile(recordOf(creating));
    await fsp.rm(recordOf(creating));

    await runGc(app);

    expect(await presence(old)).toEqual({ noRecord: [false], emptyRecord: [false, false], cutRecord: [false, false], noFile: [false] });
    expect(await presence(young)).toEqual({ noRecord: [true], emptyRecord: [true, true], cutRecord: [true, true], noFile: [true] });
    expect(await fileExists(fileOf(creating))).toBe(true);
    await fsp.writeFile(recordOf(creating), creatingRecord);
    const created = await tusPatch(alice, creating, 0, creatingBytes);
    expect(created.status).toBe(204);
    expect(await downloadSha1(alice, created.headers.get('filestore-file-id')!)).toEqual({ status: 200, sha1: sha1(creatingBytes), size: creatingBytes.length });
    expect((await tusRequest(alice, 'HEAD', live)).headers.get('upload-offset')).toBe(String(MiB));
    const finished = await tusPatch(alice, live, MiB, liveBytes.subarray(MiB));
    expect(finished.status).toBe(204);
    expect(await downloadSha1(alice, finished.headers.get('filestore-file-id')!)).toEqual({ status: 200, sha1: sha1(liveBytes), size: liveBytes.length });

    // the young ones go too once as old, but a readable record goes by its creation date, not yet past
    await age(...Object.values(young).flat());
    await runGc(app);
    expect(await presence(young)).toEqual({ noRecord: [false], emptyRecord: [false, false], cutRecord: [false, false], noFile: [true] });
  });
});
