// Backends for the socket-hook tests: on each address given (argv[2],
// comma-separated), TCP port argv[3] answers "ADDR PEER\n" and UDP port
// argv[4] answers "ADDR" from that address. Prints "ready" once all listen.
import net from 'node:net';
import dgram from 'node:dgram';

const addrs = process.argv[2].split(',');
const tcpPort = Number(process.argv[3]);
const udpPort = Number(process.argv[4]);
let pending = addrs.length * 2;
const ready = () => {
  if (--pending === 0) process.stdout.write('ready\n');
};
for (const addr of addrs) {
  net
    .createServer((s) => s.end(`${addr} ${s.remoteAddress}:${s.remotePort}\n`))
    .listen(tcpPort, addr, ready);
  const u = dgram.createSocket('udp4');
  u.on('message', (_m, r) => u.send(addr, r.port, r.address));
  u.bind(udpPort, addr, ready);
}
process.on('SIGTERM', () => process.exit(0));
