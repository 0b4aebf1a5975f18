/**
 * Connection setup time to one address, measured from inside the client
 * namespace (bench/e2e runs it with `ip netns exec`): `count` TCP connects
 * one after another, each timed from connect() to the 'connect' event (the
 * SYN, the load balancer's work on it, the SYN-ACK), then closed (FIN:
 * the client keeps the port in TIME_WAIT, so no 5-tuple is reused).
 *
 *   node --import tsx bench/e2e/connect-probe.ts HOST PORT COUNT
 *
 * Prints one JSON line: {"us": [...], "failed": N}: setup times in
 * microseconds of the connects that succeeded, and how many did not within
 * 3 s (a SYN and two retransmissions).
 */
import net from 'node:net';

const [host, portText, countText] = process.argv.slice(2);
const port = Number(portText);
const count = Number(countText);
if (!host || !Number.isInteger(port) || !Number.isInteger(count) || count < 1) {
  console.error('usage: connect-probe.ts HOST PORT COUNT');
  process.exit(2);
}

function once(): Promise<number | undefined> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const s = net.connect({ host, port });
    s.setTimeout(3000, () => {
      s.destroy();
      resolve(undefined);
    });
    s.once('connect', () => {
      const us = Number(process.hrtime.bigint() - t0) / 1000;
      s.setTimeout(0);
      s.destroy();
      resolve(us);
    });
    s.once('error', reject);
  });
}

const us: number[] = [];
let failed = 0;
for (let i = 0; i < 20; i++) await once(); // warm-up: ARP, neighbour entries, JIT
for (let i = 0; i < count; i++) {
  const t = await once();
  if (t === undefined) failed++;
  else us.push(t);
}
console.log(JSON.stringify({ us, failed }));
