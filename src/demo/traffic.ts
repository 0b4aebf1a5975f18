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

const mode = process.argv[2];
const run = mode === 'http' ? httpMode : mode === 'udp' ? udpMode : mode === 'keepalive' ? keepaliveMode : undefined;
if (!run) {
  console.error('usage: traffic.ts http|udp|keepalive ...');
  process.exit(2);
}
run().catch((e) => {
  console.error(`traffic: ${(e as Error).message}`);
  process.exit(1);
});
