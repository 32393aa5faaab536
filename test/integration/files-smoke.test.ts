import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes, createHash } from 'node:crypto';
import { availableProfiles, useApp } from '../support/app.js';
import { ApiClient } from '../support/client.js';

const profiles = await availableProfiles('files smoke');

describe.each(profiles)('files over HTTP (%s profile)', (profile) => {
  const app = useApp(profile);

  it('uploads a file with multipart and downloads the same bytes back', async () => {
    const client = new ApiClient(app.baseUrl);
    await client.signUp();
    const bytes = randomBytes(300_000);
    const uploaded = await client.upload('/api/files', { name: 'data.bin', bytes });
    expect(uploaded.status).toBe(201);
    expect(uploaded.json.sha1).toBe(createHash('sha1').update(bytes).digest('hex'));
    const content = await client.get(`/api/files/${uploaded.json.id}/content`);
    expect(content.status).toBe(200);
    expect(content.bytes.equals(bytes)).toBe(true);
  });
});
