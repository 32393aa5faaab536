/** One tus request as `user`: Tus-Resumable and the user's Bearer token, plus `headers`, with an optional body. */
export function tusRequest(user: { token?: string }, method: string, url: string, headers: Record<string, string> = {}, body?: Buffer) {
  return fetch(url, {
    method,
    headers: { 'tus-resumable': '1.0.0', authorization: `Bearer ${user.token}`, ...headers },
    body: body && new Uint8Array(body),
  });
}

/** A PATCH of `body` at `offset`, with `headers` besides the ones tus requires. */
export function tusPatch(user: { token?: string }, url: string, offset: number, body: Buffer, headers: Record<string, string> = {}) {
  return tusRequest(user, 'PATCH', url, { 'upload-offset': String(offset), 'content-type': 'application/offset+octet-stream', ...headers }, body);
}

/** Creates a tus upload of `size` bytes (none sent yet) with `metadata` (plain values); returns its URL. */
export async function createTusUpload(baseUrl: string, user: { token?: string }, size: number, metadata: Record<string, string>): Promise<string> {
  const encoded = Object.entries(metadata).map(([key, value]) => `${key} ${Buffer.from(value).toString('base64')}`);
  const created = await tusRequest(user, 'POST', `${baseUrl}/api/tus`, { 'upload-length': String(size), 'upload-metadata': encoded.join(',') });
  if (created.status !== 201) throw new Error(`tus creation: ${created.status} ${await created.text()}`);
  return new URL(created.headers.get('location')!, baseUrl).toString();
}
