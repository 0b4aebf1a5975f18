// A socket client for the socket-hook tests, run inside a test cgroup and
// network namespace: performs the operations given as JSON in argv[2] and
// prints one JSON result per operation on stdout. Plain JavaScript (no tsx)
// so that it starts fast.
//   {op:'tcp', addr, port}         connect, read the server's first line; remote = getpeername
//   {op:'udp', addr, port}         unconnected: sendto, recvfrom; from = the reply's source
//   {op:'udpConnected', addr, port} connect, send, receive; remote = getpeername
import net from 'node:net';
import dgram from 'node:dgram';

const ops = JSON.parse(process.argv[2]);
const TIMEOUT_MS = 3000;

function tcp({ addr, port }) {
  return new Promise((resolve) => {
    const s = net.connect({ host: addr, port });
    let data = '';
    const done = (r) => {
      clearTimeout(timer);
      s.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => done({ error: 'timeout' }), TIMEOUT_MS);
    s.on('connect', () => {
      s.remote = { addr: s.remoteAddress, port: s.remotePort };
    });
    s.on('data', (d) => {
      data += d;
      if (data.includes('\n')) done({ reply: data.trim(), remote: s.remote });
    });
    s.on('error', (e) => done({ error: e.code }));
  });
}

function udp({ addr, port }, connected) {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    const done = (r) => {
      clearTimeout(timer);
      s.close();
      resolve(r);
    };
    const timer = setTimeout(() => done({ error: 'timeout' }), TIMEOUT_MS);
    s.on('error', (e) => done({ error: e.code }));
    s.on('message', (msg, rinfo) => {
      const r = { reply: msg.toString().trim(), from: { addr: rinfo.address, port: rinfo.port } };
      if (connected) r.remote = { addr: s.remoteAddress().address, port: s.remoteAddress().port };
      done(r);
    });
    if (connected) {
      s.connect(port, addr, (err) => {
        if (err) return done({ error: err.code });
        s.send('q', (e) => e && done({ error: e.code }));
      });
    } else {
      s.send('q', port, addr, (e) => e && done({ error: e.code }));
    }
  });
}

const out = [];
for (const op of ops) {
  if (op.op === 'tcp') out.push(await tcp(op));
  else if (op.op === 'udp') out.push(await udp(op, false));
  else if (op.op === 'udpConnected') out.push(await udp(op, true));
  else out.push({ error: `unknown op ${op.op}` });
}
process.stdout.write(JSON.stringify(out));
