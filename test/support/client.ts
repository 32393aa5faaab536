/** A tiny HTTP client for tests: JSON in, status + JSON (or bytes) out. */
export class ApiClient {
  constructor(
    readonly baseUrl: string,
    public token?: string,
  ) {}

  async request(method: string, path: string, options: { json?: unknown; body?: BodyInit; headers?: Record<string, string> } = {}) {
    const headers: Record<string, string> = { ...options.headers };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    let body = options.body;
    if (options.json !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(options.json);
    }
    const response = await fetch(this.baseUrl + path, { method, headers, body });
    const bytes = Buffer.from(await response.arrayBuffer());
    const text = bytes.toString('utf8');
    let json: any = undefined;
    if ((response.headers.get('content-type') ?? '').includes('json') && text) json = JSON.parse(text);
    return { status: response.status, headers: response.headers, json, bytes, text };
  }

  get(path: string, headers?: Record<string, string>) {
    return this.request('GET', path, { headers });
  }

  post(path: string, json?: unknown) {
    return this.request('POST', path, { json });
  }

  upload(path: string, file: { name: string; bytes: Buffer }, fields: Record<string, string> = {}) {
    const form = new FormData();
    for (const [key, value] of Object.entries(fields)) form.append(key, value);
    form.append('file', new Blob([new Uint8Array(file.bytes)]), file.name);
    return this.request('POST', path, { body: form });
  }

  /** Registers and logs in a fresh user; the client then speaks as that user. */
  async signUp(username = `u${Math.random().toString(36).slice(2, 10)}`, password = 'correct horse') {
    const registered = await this.post('/api/auth/register', { username, password });
    if (registered.status !== 201) throw new Error(`register failed: ${registered.status} ${registered.text}`);
    const login = await this.post('/api/auth/login', { username, password });
    if (login.status !== 200) throw new Error(`login failed: ${login.status} ${login.text}`);
    this.token = login.json.accessToken;
    return { username, password, userId: registered.json.user.id as string, refreshToken: login.json.refreshToken as string };
  }
}
