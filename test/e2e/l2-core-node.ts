/**
 * One "node" of test/e2e/l2-core.test.ts, run inside the node's network
 * namespace (nsenter --net): loads and attaches the datapath (XDP native on
 * the node's veth) with its pins under /sys/fs/bpf/xlb/<instance> (or takes
 * over the one a previous process left), runs an L2Announcer over the real
 * ARP map, heartbeats over UDP, watches links with
 * iproute2 and sends gratuitous ARP with arping, exactly as the agent would.
 *
 * argv[2]: JSON { nodeName, iface, nodeAddress, instance, l2 (the `l2:`
 * section), vips: AnnouncedVip[] }.
 * Control: JSON lines on stdin, `{"id":1,"cmd":"status"}`,
 * `{"id":2,"cmd":"stop"}` (an uninstall: hand the VIPs over, detach XDP,
 * remove the pins) or `{"id":3,"cmd":"restart"}` (an agent restart: the ARP
 * map and XDP stay and keep answering, the peers are told to hold this
 * node's VIPs; the next process with the same instance takes them over);
 * answers `{"id":1,"result":...}` on stdout. The first line on stdout is
 * `{"ready":true}` (or `{"error":"..."}`). SIGTERM stops as `stop` does.
 * Logs (pino JSON) go to stderr.
 */
import readline from 'node:readline';
import pino from 'pino';
import { Datapath } from '../../src/datapath/datapath.js';
import { L2Announcer } from '../../src/l2/announcer.js';
import { parseL2Config } from '../../src/l2/config.js';
import type { AnnouncedVip } from '../../src/announce/announcer.js';

interface Args {
  nodeName: string;
  iface: string;
  nodeAddress: string;
  instance: string;
  l2: unknown;
  vips: AnnouncedVip[];
}

const args = JSON.parse(process.argv[2]) as Args;
const log = pino({ level: 'info', base: { node: args.nodeName } }, pino.destination(2));
const out = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);

let dp: Datapath | undefined;
let ann: L2Announcer | undefined;
let stopping: Promise<void> | undefined;

function stop(restart = false): Promise<void> {
  stopping ??= (async () => {
    try {
      await ann?.stop({ restart });
    } finally {
      dp?.stop({ uninstall: !restart });
    }
  })();
  return stopping;
}

async function main(): Promise<void> {
  dp = Datapath.start({
    instance: args.instance,
    interfaces: [args.iface],
    nodeAddress: args.nodeAddress,
    xdpMode: 'native',
    snatPorts: { min: 61000, max: 65535 },
    conntrackSize: 1024,
    warn: (m) => log.warn(m),
  });
  // The ARP map as the agent has it: the datapath's own (pinned; kept across a restart).
  ann = await L2Announcer.start(parseL2Config(args.l2), { nodeName: args.nodeName, xdpInterfaces: [args.iface], maps: dp.l2maps, log });
  await ann.setDesired(args.vips);
  out({ ready: true });
}

process.on('SIGTERM', () => {
  void stop().finally(() => process.exit(0));
});

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const req = JSON.parse(line) as { id: number; cmd: 'status' | 'stop' | 'restart' };
  if (req.cmd === 'status') out({ id: req.id, result: ann?.status() ?? null });
  else if (req.cmd === 'stop' || req.cmd === 'restart') void stop(req.cmd === 'restart').then(() => out({ id: req.id, result: 'stopped' }));
}).on('close', () => {
  // The test went away: clean up rather than leave XDP attached and pins behind.
  void stop().finally(() => process.exit(0));
});

main().catch(async (e) => {
  out({ error: (e as Error).message });
  await stop().catch(() => {});
  process.exit(1);
});
