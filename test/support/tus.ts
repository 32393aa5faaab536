/** One tus request as `user`: Tus-Resumable and the user's Bearer token, plus `headers`, with an optional body. */
export function tusRequest(user: { token?: string }, method: string, url: string, headers: Record<string, string> = {}, body?: Buffer) {
  return fetch(url, {
    method,
    headers: { 'tus-resumable': '1.0.0', authorization: `Bearer ${user.token}`, ...headers },
    body: body && new Uint8Array(body),
  });
}
