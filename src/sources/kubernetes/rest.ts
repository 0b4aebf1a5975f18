/**
 * Raw JSON lists from the API server, chunked with `limit`/`continue`
 * (Kubernetes API concepts, "Retrieving large results sets in chunks").
 *
 * Why not client-node's typed `list*` calls: they run every object through
 * its ObjectSerializer, which drops fields it does not know and turns
 * timestamps into Dates, while watch events arrive as plain JSON. The
 * informer's cache would then hold two shapes of the same object, and the
 * normalizer could not report a field it never sees. One raw shape for list
 * and watch keeps both paths identical (and a 10 000-object list fast).
 */
import http from 'node:http';
import https from 'node:https';
import type { KubeConfig } from '@kubernetes/client-node';

/** An error response of the API server (a meta/v1 Status), or a transport error (code 0). */
export class KubeRequestError extends Error {
  constructor(
    message: string,
    /** HTTP status; 0 when no response came. */
    readonly statusCode: number,
    /** Status `reason` (Expired, Forbidden, ...). */
    readonly reason?: string,
  ) {
    super(message);
    this.name = 'KubeRequestError';
  }
}

/** Options of {@link listAll}. */
export interface ListOptions {
  /** Items per page (client-go's reflector uses 500); 0: one page. */
  limit?: number;
  labelSelector?: string;
  fieldSelector?: string;
  /**
   * `"0"`: any version the server has (kube-apiserver answers from its watch
   * cache, in one response: `limit` is ignored), as client-go's reflector
   * lists first; absent: the latest version, read through to etcd, paged.
   */
  resourceVersion?: string;
  /** Per-request idle timeout, ms (default 60 000). */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** A complete list: every page's items and the list's resourceVersion. */
export interface RawList {
  items: unknown[];
  resourceVersion: string;
  /** Pages fetched (including restarts after an expired continue token). */
  pages: number;
  /** performance.now() when the last page's body had been received (before parsing), ms. */
  receivedAt: number;
}

/**
 * GET a path and parse the JSON body.
 * @throws KubeRequestError with the Status' code, reason and message, or code 0 on transport errors
 */
export async function getJson(kc: KubeConfig, path: string, query: Record<string, string | undefined>, opts: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<unknown> {
  return (await getJsonTimed(kc, path, query, opts)).body;
}

/** {@link getJson}, also saying when the body had been received (performance.now(), ms). */
export async function getJsonTimed(
  kc: KubeConfig,
  path: string,
  query: Record<string, string | undefined>,
  opts: { timeoutMs?: number; signal?: AbortSignal } = {},
): Promise<{ body: unknown; receivedAt: number }> {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new KubeRequestError('no current cluster in the kubeconfig', 0);
  const url = new URL(cluster.server.replace(/\/$/, '') + path);
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== '') url.searchParams.set(k, v);
  const reqOpts: https.RequestOptions & { headers?: Record<string, string> } = {};
  await kc.applyToHTTPSOptions(reqOpts);
  const mod = url.protocol === 'http:' ? http : https;
  const headers: Record<string, string> = { accept: 'application/json', ...(reqOpts.headers as Record<string, string>) };
  return new Promise((resolve, reject) => {
    const req = mod.request(url, { method: 'GET', agent: reqOpts.agent, headers, auth: reqOpts.auth, signal: opts.signal }, (res) => {
      // Decoded as the chunks arrive (a multi-byte character split between
      // chunks is joined by the stream's decoder), not after the last one:
      // a 22 MB list then costs one join at its end instead of a concat and
      // a decode.
      res.setEncoding('utf8');
      const parts: string[] = [];
      res.on('data', (c: string) => parts.push(c));
      res.on('error', (e) => reject(new KubeRequestError(`GET ${url.pathname}: ${e.message}`, 0)));
      res.on('end', () => {
        const receivedAt = performance.now();
        const text = parts.length === 1 ? parts[0] : parts.join('');
        let body: unknown;
        try {
          body = JSON.parse(text);
        } catch {
          body = undefined;
        }
        const code = res.statusCode ?? 0;
        if (code >= 200 && code < 300) {
          if (body === undefined) return reject(new KubeRequestError(`GET ${url.pathname}: response is not JSON`, code));
          return resolve({ body, receivedAt });
        }
        const st = body && typeof body === 'object' ? (body as { message?: string; reason?: string }) : {};
        reject(new KubeRequestError(`GET ${url.pathname}: ${code} ${st.reason ?? res.statusMessage ?? ''}: ${st.message ?? text.slice(0, 200)}`, code, st.reason));
      });
    });
    req.setTimeout(opts.timeoutMs ?? 60_000, () => req.destroy(new Error(`no data for ${opts.timeoutMs ?? 60_000} ms`)));
    req.on('error', (e) => reject(new KubeRequestError(`GET ${url.pathname}: ${e.message}`, 0)));
    req.end();
  });
}

/**
 * List a collection completely, page by page. The server serves every page
 * from the snapshot of the first; when that snapshot has been compacted
 * (410 Expired on a continue token) the list starts over, as client-go's
 * pager does, so the result is always one consistent snapshot.
 *
 * @param path collection path, e.g. `/api/v1/services`
 * @throws KubeRequestError on any other error response
 */
export async function listAll(kc: KubeConfig, path: string, opts: ListOptions = {}): Promise<RawList> {
  let pages = 0;
  for (let restarts = 0; ; restarts++) {
    const items: unknown[] = [];
    let cont: string | undefined;
    let resourceVersion = '';
    let receivedAt = 0;
    try {
      do {
        const page = await getJsonTimed(
          kc,
          path,
          {
            limit: opts.limit ? String(opts.limit) : undefined,
            continue: cont,
            resourceVersion: cont ? undefined : opts.resourceVersion,
            labelSelector: cont ? undefined : opts.labelSelector,
            fieldSelector: cont ? undefined : opts.fieldSelector,
          },
          opts,
        );
        const body = page.body as { items?: unknown; metadata?: { resourceVersion?: string; continue?: string } };
        receivedAt = page.receivedAt;
        pages++;
        if (body.items !== null && body.items !== undefined && !Array.isArray(body.items)) throw new KubeRequestError(`GET ${path}: items is not a list`, 200);
        // A loop, not push(...spread): pages can exceed the argument limit.
        for (const it of (body.items as unknown[]) ?? []) items.push(it);
        resourceVersion = body.metadata?.resourceVersion ?? '';
        cont = body.metadata?.continue || undefined;
      } while (cont);
      return { items, resourceVersion, pages, receivedAt };
    } catch (e) {
      if (e instanceof KubeRequestError && e.statusCode === 410 && cont !== undefined && restarts < 3) continue;
      throw e;
    }
  }
}
