import fsp from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { availableProfiles, useApp } from '../support/app.js';
import { chromiumAvailable, launchChromium, serveStatic, type StaticSite } from '../support/browser.js';
import { expectErrorBody, newUser, sha1 } from '../support/files.js';
import { tusRequest } from '../support/tus.js';
import { MiB } from '../support/uploads.js';

const SUITE = 'tus in chromium';
const hasChromium = chromiumAvailable(SUITE);
const profiles = hasChromium ? await availableProfiles(SUITE) : ['embedded' as const];

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const pageDir = path.join(root, 'test/e2e/tus-page');
/** The page's site: its own HTML and scripts, and tus-js-client's browser build as the package ships it. */
const PAGE_FILES = {
  '/': path.join(pageDir, 'index.html'),
  '/uploader.js': path.join(pageDir, 'uploader.js'),
  '/seeded-bytes.js': path.join(pageDir, 'seeded-bytes.js'),
  '/tus.min.js': path.join(root, 'node_modules/tus-js-client/dist/tus.min.js'),
};
/** The very function the page builds its File with, so the test knows the bytes it must get back. */
const seededBytes = new Function(`${await fsp.readFile(PAGE_FILES['/seeded-bytes.js'], 'utf8')}\nreturn seededBytes;`)() as (
  seed: number,
  size: number,
) => Uint8Array;

type User = Awaited<ReturnType<typeof newUser>>;

interface UploadJob {
  endpoint: string;
  token: string;
  seed: number;
  size: number;
  name: string;
  folder: string;
  abortAfter?: number;
  /** tus-js-client options besides the page's own. */
  options?: Record<string, unknown>;
}
/** What test/e2e/tus-page/uploader.js puts on the page's window (evaluated functions run in the page: no closures). */
interface TusPage {
  uploadAndAbort(job: UploadJob): Promise<{ url: string }>;
  upload(job: UploadJob): Promise<{ previousUploads: number; url: string; fileId: string | null }>;
  resumeUpload(job: UploadJob): Promise<{ previousUploads: number; url: string; fileId: string | null }>;
  uploadRefusal(job: UploadJob): Promise<{ message: string; status: number | null; body: string | null; tusResumable: string | null }>;
}

describe.skipIf(!hasChromium)(SUITE, () => {
  let browser: Browser;
  let site: StaticSite;
  beforeAll(async () => {
    [browser, site] = await Promise.all([launchChromium(), serveStatic(PAGE_FILES)]);
  });
  afterAll(async () => {
    await browser?.close();
    await site?.close();
  });

  // each test its own context: its own localStorage and preflight cache, as a fresh browser profile
  let context: BrowserContext | undefined;
  afterEach(async () => {
    await context?.close();
    context = undefined;
  });
  async function openPage(): Promise<Page> {
    context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${site.origin}/`);
    return page;
  }

  describe.each(profiles)('a page of another origin with tus-js-client (%s profile)', (profile) => {
    const logLines: Array<Record<string, unknown>> = [];
    const app = useApp(profile, {}, { logLines });
    const requestsTo = (method: string) =>
      logLines.filter((line) => {
        const req = line.req as { method?: string; url?: string } | undefined;
        return req?.method === method && req.url?.startsWith('/api/tus');
      });

    /** The file the page uploaded is in `user`'s drive, under `fileId`, with its name, folder, size, SHA-1 and bytes. */
    async function expectInDrive(user: User, job: UploadJob, fileId: string | null) {
      const bytes = Buffer.from(seededBytes(job.seed, job.size));
      const listed = await user.get(`/api/files?folder=${encodeURIComponent(job.folder)}`);
      expect(listed.json.files).toEqual([
        expect.objectContaining({ id: fileId, name: job.name, folder: job.folder, size: job.size, sha1: sha1(bytes) }),
      ]);
      const content = await user.get(`/api/files/${fileId}/content`);
      expect(content.status).toBe(200);
      expect(content.bytes.equals(bytes)).toBe(true);
    }
    const statusOf = (line: Record<string, unknown>) => (line.res as { statusCode?: number } | undefined)?.statusCode;

    it('resumes after an abort and a page reload from the URL tus-js-client stored, and the drive holds the exact bytes', async () => {
      const alice = await newUser(app);
      const job: UploadJob = {
        endpoint: `${app.baseUrl}/api/tus`,
        token: alice.token!,
        seed: 20261126,
        size: 4 * MiB + 12345,
        name: 'holiday.bin',
        folder: '/from the browser',
        abortAfter: 0.4,
      };
      const page = await openPage();
      expect(new URL(page.url()).origin).not.toBe(new URL(app.baseUrl).origin);
      const patches: Array<{ url: string; offset: number }> = [];
      page.on('request', (request) => {
        if (request.method() === 'PATCH') patches.push({ url: request.url(), offset: Number(request.headers()['upload-offset']) });
      });

      // throttled, so that the abort lands in the middle of a PATCH body rather than between two PATCHes
      const cdp = await context!.newCDPSession(page);
      await cdp.send('Network.enable');
      const throttle = (uploadThroughput: number) =>
        cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput });
      await throttle(2 * MiB);
      const aborted = await page.evaluate((job) => (globalThis as unknown as TusPage).uploadAndAbort(job), job);
      await throttle(-1);
      expect(aborted.url).toMatch(new RegExp(`^${app.baseUrl}/api/tus/[0-9a-f]{32}$`));
      const kept = Number((await tusRequest(alice, 'HEAD', aborted.url)).headers.get('upload-offset'));
      expect(kept).toBeGreaterThan(0);
      expect(kept).toBeLessThan(job.size);
      await expect.poll(() => requestsTo('PATCH').map((line) => line.msg)).toContain('request aborted');

      await page.reload();
      const sentBefore = patches.length;
      const resumed = await page.evaluate((job) => (globalThis as unknown as TusPage).resumeUpload(job), job);
      expect(resumed).toEqual({ previousUploads: 1, url: aborted.url, fileId: expect.any(String) });
      const resumedPatches = patches.slice(sentBefore);
      expect(resumedPatches[0]).toEqual({ url: aborted.url, offset: kept });
      expect(resumedPatches.length).toBe(Math.ceil((job.size - kept) / MiB));

      await expectInDrive(alice, job, resumed.fileId);

      // the page is on another origin and sends Authorization: chromium asked first, and was let through
      const preflights = requestsTo('OPTIONS');
      expect(preflights.length).toBeGreaterThan(0);
      expect(new Set(preflights.map(statusOf))).toEqual(new Set([204]));
    });

    const jobFor = (user: User, name: string, options: Record<string, unknown>): UploadJob => ({
      endpoint: `${app.baseUrl}/api/tus`,
      token: user.token!,
      seed: name.length,
      size: 2 * MiB + 777,
      name,
      folder: '/options',
      options,
    });

    it("lets tus-js-client's addRequestId through the preflight: the server logs each request under the X-Request-ID the page sent", async () => {
      const alice = await newUser(app);
      const job = jobFor(alice, 'traced.bin', { addRequestId: true });
      const page = await openPage();
      const sentIds: string[] = [];
      page.on('request', (request) => {
        const id = request.headers()['x-request-id'];
        if (id) sentIds.push(id);
      });
      const finished = await page.evaluate((job) => (globalThis as unknown as TusPage).upload(job), job);
      await expectInDrive(alice, job, finished.fileId);
      // the creation and three PATCHes
      expect(sentIds).toHaveLength(4);
      await expect.poll(() => logLines.map((line) => line.reqId)).toEqual(expect.arrayContaining(sentIds));
    });

    it("honours X-HTTP-Method-Override (tus-js-client's overridePatchMethod): each PATCH sent as a POST writes its bytes", async () => {
      const alice = await newUser(app);
      const job = jobFor(alice, 'overridden.bin', { overridePatchMethod: true });
      const page = await openPage();
      const sent: string[] = [];
      page.on('request', (request) => {
        if (request.url().startsWith(job.endpoint)) sent.push(`${request.method()} ${request.headers()['x-http-method-override'] ?? ''}`.trim());
      });
      const finished = await page.evaluate((job) => (globalThis as unknown as TusPage).upload(job), job);
      expect(sent).toEqual(['POST', 'POST PATCH', 'POST PATCH', 'POST PATCH']);
      await expectInDrive(alice, job, finished.fileId);
    });

    it("hands a refusal's status and body to onError (a wrong token: 401), not an opaque CORS failure", async () => {
      const page = await openPage();
      const job: UploadJob = { endpoint: `${app.baseUrl}/api/tus`, token: 'not-a-token', seed: 7, size: 1000, name: 'refused.bin', folder: '/' };
      const refusal = await page.evaluate((job) => (globalThis as unknown as TusPage).uploadRefusal(job), job);
      expect(refusal).toEqual(expect.objectContaining({ status: 401, tusResumable: '1.0.0' }));
      expect(expectErrorBody(JSON.parse(refusal.body!)).code).toBe('unauthorized');
      expect(requestsTo('POST').map(statusOf)).toContain(401);
    });
  });
});
