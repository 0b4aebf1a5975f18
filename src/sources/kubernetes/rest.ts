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

/**
 * A list with more items than the caller accepts (ListOptions.maxItems).
 * The response is abandoned as soon as the item over the limit is seen, so
 * a list of millions costs no more memory than the limit's worth.
 */
export class ListTooLargeError extends Error {
  constructor(
    /** Collection path, e.g. `/api/v1/services`. */
    readonly path: string,
    /** The limit that was passed. */
    readonly maxItems: number,
  ) {
    super(`GET ${path}: the list has more than ${maxItems} items`);
    this.name = 'ListTooLargeError';
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
  /**
   * Called with each item as soon as it is parsed, in list order; what it
   * returns is the item listed. Items are parsed one at a time (see
   * {@link parseList}), so that an item the caller reduces (normalizes,
   * trims) is garbage before the next is parsed, instead of the whole list
   * being alive at once.
   */
  eachItem?: (item: unknown) => unknown;
  /**
   * Most items accepted across all pages; one more and the list fails with
   * {@link ListTooLargeError} (the response being read is abandoned at once).
   * Default: no limit.
   */
  maxItems?: number;
}

/** A complete list: every page's items and the list's resourceVersion. */
export interface RawList {
  items: unknown[];
  resourceVersion: string;
  /** Pages fetched (including restarts after an expired continue token). */
  pages: number;
  /** performance.now() when the last page's last byte had been received, ms (a streamed page is parsed by then, but for its last chunk). */
  receivedAt: number;
}

/**
 * GET a path and parse the JSON body.
 * @throws KubeRequestError with the Status' code, reason and message, or code 0 on transport errors
 */
export async function getJson(kc: KubeConfig, path: string, query: Record<string, string | undefined>, opts: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<unknown> {
  return (await getJsonTimed(kc, path, query, opts)).body;
}

/**
 * {@link getJson}, also saying when the body had been received (performance.now(), ms).
 * @param opts.stream makes the parser that a successful response's chunks go to as they arrive (default: JSON.parse of the whole body)
 */
export async function getJsonTimed(
  kc: KubeConfig,
  path: string,
  query: Record<string, string | undefined>,
  opts: { timeoutMs?: number; signal?: AbortSignal; stream?: () => Pick<ListStreamParser, 'push' | 'end'> } = {},
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
      const code = res.statusCode ?? 0;
      // A list is parsed while it arrives (ListStreamParser); an error Status is parsed whole.
      const stream = code >= 200 && code < 300 ? opts.stream?.() : undefined;
      let abandoned = false;
      res.on('data', (c: string) => {
        if (abandoned) return;
        parts.push(c);
        try {
          stream?.push(c);
        } catch (e) {
          // The parser refuses the body (a list over its limit): stop reading it.
          abandoned = true;
          parts.length = 0;
          req.destroy();
          reject(e);
        }
      });
      res.on('error', (e) => reject(new KubeRequestError(`GET ${url.pathname}: ${e.message}`, 0)));
      res.on('end', () => {
        if (abandoned) return;
        const receivedAt = performance.now();
        let joined: string | undefined;
        const text = () => (joined ??= parts.length === 1 ? parts[0] : parts.join(''));
        let body: unknown;
        try {
          body = stream ? stream.end(text) : JSON.parse(text());
        } catch (e) {
          if (e instanceof ListTooLargeError) return reject(e);
          body = undefined;
        }
        if (code >= 200 && code < 300) {
          if (body === undefined) return reject(new KubeRequestError(`GET ${url.pathname}: response is not JSON`, code));
          return resolve({ body, receivedAt });
        }
        const st = body && typeof body === 'object' ? (body as { message?: string; reason?: string }) : {};
        reject(new KubeRequestError(`GET ${url.pathname}: ${code} ${st.reason ?? res.statusMessage ?? ''}: ${st.message ?? text().slice(0, 200)}`, code, st.reason));
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
 * @throws ListTooLargeError when the list has more than `opts.maxItems` items
 */
export async function listAll(kc: KubeConfig, path: string, opts: ListOptions = {}): Promise<RawList> {
  const eachItem = opts.eachItem;
  const maxItems = opts.maxItems ?? Infinity;
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
          {
            timeoutMs: opts.timeoutMs,
            signal: opts.signal,
            stream: eachItem && (() => new ListStreamParser(eachItem, { maxItems: maxItems - items.length, path, limit: maxItems })),
          },
        );
        const body = page.body as { items?: unknown; metadata?: { resourceVersion?: string; continue?: string } };
        receivedAt = page.receivedAt;
        pages++;
        if (body.items !== null && body.items !== undefined && !Array.isArray(body.items)) throw new KubeRequestError(`GET ${path}: items is not a list`, 200);
        // A loop, not push(...spread): pages can exceed the argument limit.
        // (parseList has run eachItem on this page's items already.)
        for (const it of (body.items as unknown[]) ?? []) items.push(it);
        if (items.length > maxItems) throw new ListTooLargeError(path, maxItems);
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

/**
 * JSON.parse of a list response, one item at a time: the text outside the
 * top-level `items` array is parsed on its own, then each item, and each
 * goes through `eachItem` before the next is parsed. The result equals
 * `JSON.parse(text)` with `items` mapped through `eachItem` (tested). It is
 * {@link ListStreamParser} given the whole text as one chunk.
 *
 * Why: a 10,000-slice list is ~22 MB of JSON, ~65 MB of objects; parsed
 * whole, all of it is alive until the last item has been handled, and the
 * young generation's collections copy it (measured: ~40% less collection
 * time while parsing and normalizing the list when items are handled one
 * at a time).
 *
 * When the items cannot be found (no top-level `items` array of objects),
 * or one of them does not parse, the text is parsed whole (the error, if
 * any, is JSON.parse's) and the items then go through `eachItem`; items
 * before the one that did not parse have then been through it twice (as
 * different objects), so `eachItem` must not count on being called once.
 * @throws SyntaxError as JSON.parse for text that is not JSON
 */
export function parseList(text: string, eachItem: (item: unknown) => unknown): unknown {
  const p = new ListStreamParser(eachItem);
  p.push(text);
  return p.end(() => text);
}

/** JSON.parse of the whole text, then `items` (if an array) mapped through `eachItem`. */
function parseWhole(text: string, eachItem: (item: unknown) => unknown, limits?: { maxItems: number; path: string; limit: number }): unknown {
  const body = JSON.parse(text) as { items?: unknown };
  if (body && typeof body === 'object' && Array.isArray(body.items)) {
    if (limits && body.items.length > limits.maxItems) throw new ListTooLargeError(limits.path, limits.limit);
    body.items = body.items.map((it) => eachItem(it));
  }
  return body;
}

/**
 * {@link parseList} while the response is still arriving: each chunk is
 * scanned as it comes, and each item is parsed and handed to `eachItem` as
 * soon as its closing brace is in. At the end only the last chunk's items
 * are left to do.
 *
 * The scan skips strings (with their escapes) and counts nesting: it finds
 * the top-level `items` array and the extent of each of its elements, and
 * trusts JSON.parse to reject what is not JSON. Text it does not recognise
 * (no top-level `items` array, an element that is not an object, a second
 * `items` key, an item that does not parse) is parsed whole at the end:
 * same result, same errors (see {@link parseList} on `eachItem`).
 *
 * Why: an API server serves a list with `resourceVersion=0` from its watch
 * cache in one response, whatever the `limit` (a 10,000-slice list is one
 * 22 MB body). Parsed after its last byte, that body took 180 ms of a cold
 * agent's time to programmed, while the agent's thread had been idle for
 * 200 to 300 ms waiting for the bytes (measured with the Kubernetes
 * benchmark's list).
 */
export class ListStreamParser {
  /** Kept text: all of it until the items array is found, then from the item being read (or the array's end) on. */
  private pending = '';
  /** Where the scan resumes in `pending`. */
  private pos = 0;
  private depth = 0;
  /** The last string seen at depth 1 (a key, when a '[' follows). */
  private lastKey = '';
  /** The text up to and including the items array's '['; undefined until it is found. */
  private head: string | undefined;
  /** Start in `pending` of the item being read, or -1 between items. */
  private itemStart = -1;
  /** Start in `pending` of the text from the items array's ']' on, once it is found; else -1. */
  private tailStart = -1;
  private failed = false;
  private readonly items: unknown[] = [];

  /**
   * @param limits.maxItems most items this body may have (default no limit): one more and
   *   {@link push} or {@link end} throws {@link ListTooLargeError} naming `limits.path` and `limits.limit`
   */
  constructor(
    private readonly eachItem: (item: unknown) => unknown,
    private readonly limits: { maxItems: number; path: string; limit: number } = { maxItems: Infinity, path: '', limit: Infinity },
  ) {}

  /**
   * Take the next chunk of the body (decoded text).
   * @throws ListTooLargeError once the body has more items than allowed
   */
  push(chunk: string): void {
    if (this.failed) return;
    this.pending += chunk;
    try {
      this.scan();
    } catch (e) {
      if (e instanceof ListTooLargeError) throw e;
      this.failed = true; // an item that does not parse: the whole parse reports it at the end
    }
    if (this.failed) this.pending = '';
  }

  /**
   * The parsed body, as {@link parseList} gives it.
   * @param text the whole body, asked for only when the scan failed
   * @throws SyntaxError as JSON.parse for text that is not JSON
   */
  end(text: () => string): unknown {
    if (!this.failed && this.head !== undefined && this.tailStart >= 0) {
      try {
        const outer = JSON.parse(this.head + this.pending.slice(this.tailStart)) as Record<string, unknown>;
        if (outer && typeof outer === 'object' && Array.isArray(outer.items) && outer.items.length === 0) {
          outer.items = this.items;
          return outer;
        }
      } catch (e) {
        if (!(e instanceof SyntaxError)) throw e;
      }
    }
    return parseWhole(text(), this.eachItem, this.limits);
  }

  private scan(): void {
    const t = this.pending;
    const n = t.length;
    let i = this.pos;
    for (; i < n; i++) {
      const c = t.charCodeAt(i);
      const inItems = this.head !== undefined && this.tailStart < 0;
      if (c === 0x22) {
        // A string: its closing quote is the first one not escaped (an even number of backslashes before it).
        let j = i;
        for (;;) {
          j = t.indexOf('"', j + 1);
          if (j < 0) break;
          let slashes = 0;
          while (t.charCodeAt(j - 1 - slashes) === 0x5c) slashes++;
          if ((slashes & 1) === 0) break;
        }
        if (j < 0) break; // the string goes on in the next chunk: resume at its quote
        if (this.depth === 2 && inItems) return void (this.failed = true); // an element that is not an object
        if (this.depth === 1) {
          // A second "items" key (before or after the array's end): JSON.parse would keep the last one.
          if (this.head !== undefined && j - i - 1 === 5 && t.startsWith('items', i + 1)) return void (this.failed = true);
          this.lastKey = t.slice(i + 1, j);
        }
        i = j;
      } else if (c === 0x7b || c === 0x5b) {
        if (this.depth === 1 && c === 0x5b && this.head === undefined && this.lastKey === 'items') this.head = t.slice(0, i + 1);
        else if (this.depth === 2 && inItems) {
          if (c !== 0x7b) return void (this.failed = true);
          this.itemStart = i;
        }
        this.depth++;
      } else if (c === 0x7d || c === 0x5d) {
        this.depth--;
        if (this.depth === 2 && inItems && c === 0x7d) {
          if (this.items.length >= this.limits.maxItems) throw new ListTooLargeError(this.limits.path, this.limits.limit);
          this.items.push(this.eachItem(JSON.parse(t.slice(this.itemStart, i + 1))));
          this.itemStart = -1;
        } else if (this.depth === 1 && inItems && c === 0x5d) this.tailStart = i;
      } else if (this.depth === 2 && inItems && c > 0x20 && c !== 0x2c) {
        return void (this.failed = true); // an element that is not an object
      }
    }
    // Keep only what is still needed.
    if (this.head === undefined) {
      this.pos = i;
      return;
    }
    const keep = this.tailStart >= 0 ? this.tailStart : this.itemStart >= 0 ? this.itemStart : i;
    this.pending = t.slice(keep);
    this.pos = i - keep;
    if (this.tailStart >= 0) this.tailStart = 0;
    else if (this.itemStart >= 0) this.itemStart = 0;
  }
}
