/**
 * A tiny HTTP client for the agent API that also speaks over unix sockets
 * (node:http with socketPath), which fetch cannot.
 */
import http from 'node:http';

/** The API address from XLB_API, else the agent's default. */
export function defaultApi(): string {
  return process.env.XLB_API ?? '127.0.0.1:9876';
}

/**
 * GET `path` from the agent at `api` (HOST:PORT or unix:/path) and parse JSON.
 * @throws Error with the agent's error message on a non-2xx status (unless allowError), or naming the address when unreachable
 */
export function apiGet(api: string, path: string, opts: { allowError?: boolean; timeoutMs?: number } = {}): Promise<unknown> {
  const target: http.RequestOptions = api.startsWith('unix:')
    ? { socketPath: api.slice(5) }
    : { host: api.slice(0, api.lastIndexOf(':')), port: Number(api.slice(api.lastIndexOf(':') + 1)) };
  return new Promise((resolve, reject) => {
    const req = http.get({ ...target, path, timeout: opts.timeoutMs ?? 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (body += c));
      res.on('end', () => {
        let parsed: unknown = body;
        try {
          parsed = JSON.parse(body);
        } catch {
          /* metrics and other text */
        }
        if ((res.statusCode ?? 500) >= 300 && !opts.allowError) {
          const msg = (parsed as { message?: string })?.message ?? body;
          return reject(new Error(`${path}: ${res.statusCode} ${msg}`));
        }
        resolve(parsed);
      });
    });
    req.on('timeout', () => req.destroy(new Error(`agent API ${api}: no answer within ${opts.timeoutMs ?? 5000} ms`)));
    req.on('error', (e) => reject(new Error(`agent API ${api}: ${e.message}`)));
  });
}
