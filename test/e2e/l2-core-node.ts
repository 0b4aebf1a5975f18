/**
 * One "node" of test/e2e/l2-core.test.ts, run inside the node's network
 * namespace (nsenter --net): loads and attaches the datapath (XDP native on
 * the node's veth) with its pins under /sys/fs/bpf/xlb/<instance>, runs an
 * L2Announcer over the real ARP map, heartbeats over UDP, watches links with
 * iproute2 and sends gratuitous ARP with arping, exactly as the agent would.
 *
 * argv[2]: JSON { nodeName, iface, nodeAddress, instance, l2 (the `l2:`
 * section), vips: AnnouncedVip[] }.
 * Control: JSON lines on stdin, `{"id":1,"cmd":"status"}` or
 * `{"id":2,"cmd":"stop"}`; answers `{"id":1,"result":...}` on stdout. The
 * first line on stdout is `{"ready":true}` (or `{"error":"..."}`). SIGTERM
 * stops cleanly too. Logs (pino JSON) go to stderr.
 */
import readline from 'node:readline';
import pino from 'pino';
import { Datapath } from '../../src/datapath/datapath.js';
import { BpfL2Maps } from '../../src/datapath/l2maps.js';
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
let maps: BpfL2Maps | undefined;
let ann: L2Announcer | undefined;
let stopping: Promise<void> | undefined;

function stop(): Promise<void> {
  stopping ??= (async () => {
    try {
      await ann?.stop();
    } finally {
      maps?.close();
      dp?.stop();
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
  maps = BpfL2Maps.fromPinDir(dp.pinDir);
  ann = await L2Announcer.start(parseL2Config(args.l2), { nodeName: args.nodeName, xdpInterfaces: [args.iface], maps, log });
  await ann.setDesired(args.vips);
  out({ ready: true });
}

process.on('SIGTERM', () => {
  void stop().finally(() => process.exit(0));
});

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const req = JSON.parse(line) as { id: number; cmd: 'status' | 'stop' };
  if (req.cmd === 'status') out({ id: req.id, result: ann?.status() ?? null });
  else if (req.cmd === 'stop') void stop().then(() => out({ id: req.id, result: 'stopped' }));
}).on('close', () => {
  // The test went away: clean up rather than leave XDP attached and pins behind.
  void stop().finally(() => process.exit(0));
});

main().catch(async (e) => {
  out({ error: (e as Error).message });
  await stop().catch(() => {});
  process.exit(1);
});
