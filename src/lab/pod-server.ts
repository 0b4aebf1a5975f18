/**
 * A lab pod's workload: HTTP on --http-port answering `POD CLIENTIP:PORT\n`
 * (the pod's name first, then the client address it saw; keep-alive works)
 * and a UDP echo on --udp-port answering `POD\n`. Runs inside the pod's
 * network namespace.
 */
import http from 'node:http';
import dgram from 'node:dgram';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
}

const name = arg('name', 'pod');
const httpPort = Number(arg('http-port', '8080'));
const udpPort = Number(arg('udp-port', '5353'));

const server = http.createServer((req, res) => {
  req.resume();
  const body = `${name} ${req.socket.remoteAddress}:${req.socket.remotePort}\n`;
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
  res.end(body);
});
server.keepAliveTimeout = 120_000;
server.listen(httpPort, '0.0.0.0');

const udp = dgram.createSocket('udp4');
udp.on('message', (_msg, rinfo) => udp.send(`${name}\n`, rinfo.port, rinfo.address));
udp.bind(udpPort, '0.0.0.0');

const stop = () => {
  server.close();
  udp.close();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
