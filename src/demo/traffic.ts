/**
 * Traffic generator run inside the lab's client namespace (`ip netns exec`):
 * prints one JSON line per result on stdout, so the demo, the tests and the
 * benchmarks read it the same way.
 *
 *   http --url URL --count N [--concurrency C] [--rate R]
 *       N requests, a new TCP connection each; counts responses by the first
 *       word of the body (the backend pod's name), and the requests slower
 *       than 900 ms (`slow`: a lost SYN is retransmitted after 1 s). With
 *       --rate, request k starts no earlier than k/R seconds in.
 *   udp --to IP:PORT --count N
 *       N datagrams, each from a new source port; counts replies by pod name.
 *   keepalive --url URL --connections K
 *       opens K keep-alive connections and sends one request on each, prints
 *       which pod each is on; then, for every line read on stdin, sends one
 *       more request on each same connection and prints the pods again.
 *       `--close` on stdin (EOF) ends it.
 *   restart --url URL --connections K [--interval-ms 20] [--timeout-ms 5000] [--request-every-ms 0]
 *       for the restart harness (src/lab/restart.ts): holds K keep-alive
 *       connections, each a raw socket with its request written by hand (no
 *       agent that could reconnect), and opens a fresh connection with one
 *       request every --interval-ms, whatever the earlier ones are doing.
 *       Prints {"event":"open"} once every held connection has its first
 *       answer (pod, the client address the pod saw, local port). With
 *       --request-every-ms M, each held connection also asks again every M
 *       ms until the check (a held connection is broken by its first error,
 *       or an answer from another pod or seeing another address). Commands
 *       on stdin, one JSON object a line: {"cmd":"wait","count":N} prints
 *       {"event":"waited"} once the next N new connections have finished;
 *       {"cmd":"check"} stops opening new connections, waits for those under
 *       way, sends one more request on every held connection and prints
 *       {"event":"result"} (each held connection's requests answered, its
 *       slowest answer and its first failure: code, when, and whether a
 *       request was under way; every new connection's start, duration and
 *       error code, '' when answered), then exits.
 *       Times are ms since the epoch (performance.timeOrigin + now()). EOF
 *       on stdin ends it.
 */
import http from 'node:http';
import dgram from 'node:dgram';
import net from 'node:net';
import readline from 'node:readline';

function arg(name: string, dflt?: string): string {
  const i = process.argv.indexOf(`--${name}`);
  if (i >= 0 && process.argv[i + 1] !== undefined) return process.argv[i + 1];
  if (dflt !== undefined) return dflt;
  throw new Error(`traffic: --${name} is required`);
}

function emit(obj: unknown): void {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

/** One HTTP GET on a fresh connection; resolves to the body's first word. */
function getOnce(url: URL, agent: http.Agent | false, timeoutMs = 3000): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: url.hostname, port: url.port || 80, path: url.pathname, agent, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve(body.trim().split(/\s+/)[0] ?? ''));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

async function httpMode(): Promise<void> {
  const url = new URL(arg('url'));
  const count = Number(arg('count', '1000'));
  const concurrency = Number(arg('concurrency', '16'));
  const rate = Number(arg('rate', '0'));
  const byBackend: Record<string, number> = {};
  let errors = 0;
  let slow = 0;
  let next = 0;
  const t0 = performance.now();
  const worker = async () => {
    while (next < count) {
      const k = next++;
      if (rate > 0) {
        const wait = t0 + (k * 1000) / rate - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      }
      const start = performance.now();
      try {
        const pod = await getOnce(url, false);
        byBackend[pod] = (byBackend[pod] ?? 0) + 1;
      } catch {
        errors++;
      }
      if (performance.now() - start > 900) slow++;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  emit({ mode: 'http', url: url.href, count, errors, slow, byBackend, seconds: (performance.now() - t0) / 1000 });
}

async function udpMode(): Promise<void> {
  const [host, portS] = arg('to').split(':');
  const port = Number(portS);
  const count = Number(arg('count', '200'));
  const byBackend: Record<string, number> = {};
  let errors = 0;
  const one = () =>
    new Promise<void>((resolve) => {
      const s = dgram.createSocket('udp4');
      const timer = setTimeout(() => {
        errors++;
        s.close();
        resolve();
      }, 2000);
      s.on('message', (m) => {
        clearTimeout(timer);
        const pod = m.toString().trim().split(/\s+/)[0];
        byBackend[pod] = (byBackend[pod] ?? 0) + 1;
        s.close();
        resolve();
      });
      s.send(`ping ${Math.random()}`, port, host);
    });
  for (let i = 0; i < count; i += 20) await Promise.all(Array.from({ length: Math.min(20, count - i) }, one));
  emit({ mode: 'udp', to: `${host}:${port}`, count, errors, byBackend });
}

async function keepaliveMode(): Promise<void> {
  const url = new URL(arg('url'));
  const k = Number(arg('connections', '20'));
  // One socket per agent: each agent keeps exactly one connection alive.
  const agents = Array.from({ length: k }, () => new http.Agent({ keepAlive: true, maxSockets: 1 }));
  const ports = new Array<number>(k).fill(0);
  const round = async (n: number) => {
    const pods = await Promise.all(
      agents.map(async (a, i) => {
        try {
          const pod = await getOnce(url, a);
          const sock = Object.values(a.sockets).flat()[0] ?? Object.values(a.freeSockets).flat()[0];
          if (sock instanceof net.Socket && sock.localPort) ports[i] = sock.localPort;
          return pod;
        } catch (e) {
          return `error:${(e as Error).message}`;
        }
      }),
    );
    emit({ mode: 'keepalive', round: n, pods, localPorts: ports });
  };
  let n = 0;
  await round(n++);
  const rl = readline.createInterface({ input: process.stdin });
  for await (const _line of rl) await round(n++);
  for (const a of agents) a.destroy();
}

/** Milliseconds since the epoch, sub-millisecond: comparable across the lab's processes. */
const epochMs = () => performance.timeOrigin + performance.now();

/** An error's code for the restart harness: the errno name, or what our own checks call it. */
function codeOf(e: unknown): string {
  return (e as NodeJS.ErrnoException)?.code ?? ((e as Error)?.message || String(e));
}

/**
 * One HTTP/1.1 exchange on a raw socket: writes a GET for `url` and resolves
 * to the response body once Content-Length bytes of it have arrived. Rejects
 * with code `timeout` after `timeoutMs`, `EOF` when the peer closes first,
 * `bad-response` for anything but a 200, or the socket's errno (ECONNRESET,
 * EPIPE, ...). Leaves the socket open (keep-alive) unless `close`.
 */
function exchange(sock: net.Socket, url: URL, timeoutMs: number, close: boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const fail = (code: string) => {
      done();
      reject(Object.assign(new Error(code), { code }));
    };
    const onData = (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      const head = buf.indexOf('\r\n\r\n');
      if (head < 0) return;
      const headers = buf.subarray(0, head).toString('latin1');
      const len = /\r\ncontent-length:\s*(\d+)/i.exec(headers);
      if (!/^HTTP\/1\.[01] 200 /.test(headers) || !len) return fail('bad-response');
      const end = head + 4 + Number(len[1]);
      if (buf.length < end) return;
      done();
      resolve(buf.subarray(head + 4, end).toString('utf8'));
    };
    const onError = (e: Error) => fail(codeOf(e));
    const onEnd = () => fail('EOF');
    const timer = setTimeout(() => fail('timeout'), timeoutMs);
    const done = () => {
      clearTimeout(timer);
      sock.off('data', onData);
      sock.off('error', onError);
      sock.off('end', onEnd);
    };
    sock.on('data', onData);
    sock.on('error', onError);
    sock.on('end', onEnd);
    sock.write(`GET ${url.pathname} HTTP/1.1\r\nHost: ${url.host}\r\n${close ? 'Connection: close\r\n' : ''}\r\n`);
  });
}

/** Connect a raw TCP socket to `url`; rejects with the errno (ECONNREFUSED, ...) or `timeout`. */
function connectTo(url: URL, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: url.hostname, port: Number(url.port || 80) });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(Object.assign(new Error('timeout'), { code: 'timeout' }));
    }, timeoutMs);
    sock.once('connect', () => {
      clearTimeout(timer);
      resolve(sock);
    });
    sock.once('error', (e) => {
      clearTimeout(timer);
      sock.destroy();
      reject(e);
    });
  });
}

/** A held connection of `restart` mode. */
interface Held {
  sock: net.Socket;
  localPort: number;
  /** The first answer: the pod's name and the client address it saw (IP:port). */
  pod: string;
  seen: string;
  /** Requests answered after the first, and the slowest of them (ms). */
  requests: number;
  longestMs: number;
  inRequest: boolean;
  /** The first failure: the errno or our own code (see exchange; `other-pod`, `other-address`), when (epoch ms), and whether a request was under way. */
  failure?: { code: string; at: number; during: 'request' | 'idle' };
}

/** One more request on held connection `h`: answered by the same pod, which saw the same client address, or `h.failure` is set. */
async function askHeld(h: Held, url: URL, timeoutMs: number): Promise<void> {
  const t0 = epochMs();
  h.inRequest = true;
  try {
    const [pod, seen] = (await exchange(h.sock, url, timeoutMs, false)).trim().split(/\s+/);
    h.requests++;
    h.longestMs = Math.max(h.longestMs, epochMs() - t0);
    if (pod !== h.pod) h.failure ??= { code: 'other-pod', at: epochMs(), during: 'request' };
    else if (seen !== h.seen) h.failure ??= { code: 'other-address', at: epochMs(), during: 'request' };
  } catch (e) {
    h.failure ??= { code: codeOf(e), at: epochMs(), during: 'request' };
  } finally {
    h.inRequest = false;
  }
}

async function restartMode(): Promise<void> {
  const url = new URL(arg('url'));
  const k = Number(arg('connections', '20'));
  const intervalMs = Number(arg('interval-ms', '20'));
  const timeoutMs = Number(arg('timeout-ms', '5000'));
  const everyMs = Number(arg('request-every-ms', '0'));

  // The held connections, opened one after another (each its own flow: ECMP and Maglev spread them).
  const held: Held[] = [];
  for (let i = 0; i < k; i++) {
    const sock = await connectTo(url, timeoutMs);
    sock.setNoDelay(true);
    const [pod, seen] = (await exchange(sock, url, timeoutMs, false)).trim().split(/\s+/);
    const h: Held = { sock, localPort: sock.localPort ?? 0, pod, seen, requests: 0, longestMs: 0, inRequest: false };
    // A reset or a close between requests is a break too; note the first.
    const idle = (code: string) => (h.failure ??= { code, at: epochMs(), during: h.inRequest ? 'request' : 'idle' });
    sock.on('error', (e) => idle(codeOf(e)));
    sock.on('end', () => idle('EOF'));
    held.push(h);
  }
  emit({ event: 'open', at: epochMs(), connections: held.map((h) => ({ localPort: h.localPort, pod: h.pod, seen: h.seen })) });

  // With --request-every-ms, each held connection asks again on that schedule until the check or its first failure.
  let heldStopped = false;
  const loops = everyMs > 0
    ? held.map(async (h) => {
        let due = epochMs();
        while (!heldStopped && !h.failure) {
          await askHeld(h, url, timeoutMs);
          due += everyMs;
          const wait = due - epochMs();
          if (wait > 0) await new Promise((r) => setTimeout(r, wait));
          else due = epochMs();
        }
      })
    : [];

  // New connections, one every intervalMs (open loop: a stalled one does not hold the next back).
  const starts: number[] = [];
  const durations: number[] = [];
  const codes: string[] = [];
  const pods: string[] = [];
  const finished: boolean[] = [];
  let finishedCount = 0;
  const waiters: Array<{ upTo: number; resolve: () => void }> = [];
  const settle = () => {
    for (const w of [...waiters]) {
      if (finished.length >= w.upTo && finished.slice(0, w.upTo).every(Boolean)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    }
  };
  const openOne = async (i: number) => {
    const t0 = epochMs();
    starts[i] = t0;
    finished[i] = false;
    let sock: net.Socket | undefined;
    try {
      sock = await connectTo(url, timeoutMs);
      const body = await exchange(sock, url, Math.max(1, timeoutMs - (epochMs() - t0)), true);
      pods[i] = body.trim().split(/\s+/)[0];
      codes[i] = '';
    } catch (e) {
      codes[i] = codeOf(e);
      pods[i] = '';
    } finally {
      sock?.destroy();
      durations[i] = epochMs() - t0;
      finished[i] = true;
      finishedCount++;
      settle();
    }
  };
  const t0 = epochMs();
  let next = 0;
  let stopped = false;
  const outstanding: Array<Promise<void>> = [];
  const tick = () => {
    if (stopped) return;
    outstanding.push(openOne(next++));
    // The schedule is fixed from t0, so a late timer does not shift the ones after it.
    timer = setTimeout(tick, Math.max(0, t0 + next * intervalMs - epochMs()));
  };
  let timer: NodeJS.Timeout = setTimeout(tick, 0);

  const check = async () => {
    stopped = true;
    clearTimeout(timer);
    heldStopped = true;
    await Promise.all([...outstanding, ...loops]);
    await Promise.all(held.filter((h) => !h.failure).map((h) => askHeld(h, url, timeoutMs)));
    emit({
      event: 'result',
      at: epochMs(),
      connections: held.map((h) => ({ localPort: h.localPort, requests: h.requests, longestMs: h.longestMs, ...(h.failure ? { failure: h.failure } : {}) })),
      newConnections: { starts, durations, codes, pods },
    });
  };

  const rl = readline.createInterface({ input: process.stdin });
  for await (const line of rl) {
    if (!line.trim()) continue;
    const c = JSON.parse(line) as { cmd: string; count?: number };
    if (c.cmd === 'wait') {
      const upTo = next + (c.count ?? 1);
      await new Promise<void>((resolve) => {
        waiters.push({ upTo, resolve });
        settle();
      });
      emit({ event: 'waited', at: epochMs(), newTotal: finishedCount });
    } else if (c.cmd === 'check') {
      await check();
      break;
    } else throw new Error(`traffic restart: unknown command ${JSON.stringify(c.cmd)}`);
  }
  // EOF, or after the check: stop everything still running.
  stopped = true;
  heldStopped = true;
  clearTimeout(timer);
  for (const h of held) h.sock.destroy();
  rl.close();
  process.stdin.destroy();
}

const mode = process.argv[2];
const run = mode === 'http' ? httpMode : mode === 'udp' ? udpMode : mode === 'keepalive' ? keepaliveMode : mode === 'restart' ? restartMode : undefined;
if (!run) {
  console.error('usage: traffic.ts http|udp|keepalive|restart ...');
  process.exit(2);
}
run().catch((e) => {
  console.error(`traffic: ${(e as Error).message}`);
  process.exit(1);
});
