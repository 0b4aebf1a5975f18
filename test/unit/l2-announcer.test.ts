/**
 * Two L2Announcers in one process, heartbeating over real UDP sockets on
 * 127.0.0.1 with the default timing (200 ms, dead after 5 missed), over
 * in-memory ARP maps, links and gratuitous ARP: VIPs spread over the nodes,
 * fail over within the 3 s target when the owner drops off, do not move
 * back when it returns, are handed over in well under 1 s on a clean stop,
 * and a healed split brain leaves exactly one owner per VIP.
 *
 * VIPs: among node-a and node-b, rendezvous hashing ranks node-a first for
 * 192.0.2.10 and node-b first for 192.0.2.11 (test/unit/l2-ownership.test.ts
 * pins the hash).
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { L2Announcer } from '../../src/l2/announcer.js';
import { parseL2Config, failoverBudgetMs, type L2Config } from '../../src/l2/config.js';
import { FakeGarpSender } from '../../src/l2/garp.js';
import { FakeLinkMonitor, type LinkInfo } from '../../src/l2/interfaces.js';
import { UdpTransport, type DatagramSource, type HeartbeatTransport } from '../../src/l2/peer-ownership.js';
import { FakeL2Maps } from '../../src/datapath/l2maps.js';
import { waitFor } from '../../src/util/wait.js';

const VIP_A = '192.0.2.10';
const VIP_B = '192.0.2.11';
const DESIRED = [
  { vip: VIP_A, service: 'default/web' },
  { vip: VIP_B, service: 'default/api' },
];
const MAC = { 'node-a': '02:00:00:00:00:0a', 'node-b': '02:00:00:00:00:0b' } as const;
type Name = keyof typeof MAC;

/** A UDP transport that can be cut off the network (datagrams dropped both ways) without stopping its node. */
class CuttableTransport implements HeartbeatTransport {
  cut = false;
  private readonly udp = new UdpTransport();
  bind(address: string, port: number): Promise<void> {
    return this.udp.bind(address, port);
  }
  send(buf: Buffer, address: string, port: number): Promise<void> {
    return this.cut ? Promise.reject(new Error('network unreachable (cut)')) : this.udp.send(buf, address, port);
  }
  onMessage(listener: (buf: Buffer, from: DatagramSource) => void): void {
    this.udp.onMessage((buf, from) => {
      if (!this.cut) listener(buf, from);
    });
  }
  close(): Promise<void> {
    return this.udp.close();
  }
}

/**
 * A UDP transport that can hold its node's datagrams back the way the kernel
 * does while the node's link has no carrier: received datagrams are lost,
 * sent ones wait (in the neighbour entry's queue, ARP for the peer being
 * unresolved) and all leave back to back when the link comes back.
 */
class HoldingTransport extends CuttableTransport {
  private held: Array<[Buffer, string, number]> | undefined;
  hold(): void {
    this.cut = true;
    this.held = [];
  }
  /** Heartbeats waiting, decoded, oldest first. */
  waiting(): Array<{ health: string; claims: string[] }> {
    return (this.held ?? []).map(([buf]) => JSON.parse(buf.toString()) as { health: string; claims: string[] });
  }
  override send(buf: Buffer, address: string, port: number): Promise<void> {
    if (!this.held) return super.send(buf, address, port);
    this.held.push([buf, address, port]);
    return Promise.resolve();
  }
  /** Let the held datagrams go, all in one burst, and take datagrams in again. */
  async release(): Promise<void> {
    const burst = this.held ?? [];
    this.held = undefined;
    this.cut = false;
    await Promise.all(burst.map(([buf, address, port]) => super.send(buf, address, port)));
  }
}

interface TestNode {
  name: Name;
  ann: L2Announcer;
  maps: FakeL2Maps;
  garp: FakeGarpSender;
  links: FakeLinkMonitor;
  transport: HoldingTransport;
}

const running: TestNode[] = [];
after(async () => {
  for (const n of running) await n.ann.stop();
});

/** Two free UDP ports on 127.0.0.1. */
async function freePorts(): Promise<[number, number]> {
  const socks = [dgram.createSocket('udp4'), dgram.createSocket('udp4')];
  const ports = await Promise.all(socks.map((s) => new Promise<number>((r) => s.bind(0, '127.0.0.1', () => r(s.address().port)))));
  await Promise.all(socks.map((s) => new Promise<void>((r) => s.close(() => r()))));
  return [ports[0], ports[1]];
}

/** The one config file both nodes share. */
async function groupConfig(): Promise<L2Config> {
  const [pa, pb] = await freePorts();
  return parseL2Config({
    peers: [
      { name: 'node-a', address: '127.0.0.1', port: pa },
      { name: 'node-b', address: '127.0.0.1', port: pb },
    ],
  });
}

const link = (name: Name, carrier = true): LinkInfo => ({ ifindex: 2, ifname: 'eth0', address: MAC[name], flags: carrier ? ['BROADCAST', 'UP', 'LOWER_UP'] : ['NO-CARRIER', 'BROADCAST', 'UP'] });

async function startNode(name: Name, config: L2Config, opts: { desired?: boolean } = {}): Promise<TestNode> {
  const maps = new FakeL2Maps();
  const garp = new FakeGarpSender();
  const links = new FakeLinkMonitor([link(name)]);
  const transport = new HoldingTransport();
  const ann = await L2Announcer.start(config, { nodeName: name, xdpInterfaces: ['eth0'], maps, garp, links, transport });
  if (opts.desired !== false) await ann.setDesired(DESIRED);
  const n = { name, ann, maps, garp, links, transport };
  running.push(n);
  return n;
}

async function stopNode(n: TestNode): Promise<void> {
  await n.ann.stop();
  running.splice(running.indexOf(n), 1);
}

/** The owners of `vip` by the ARP maps: the nodes that would answer. */
const answering = (nodes: TestNode[], vip: string): string[] => nodes.filter((n) => n.maps.vips().includes(vip)).map((n) => n.name);

/** Wait until `vip` is answered by exactly `owner` among `nodes`; returns the ms it took from `t0`. */
async function ownedBy(nodes: TestNode[], vip: string, owner: Name, t0: number, timeoutMs = 5000): Promise<number> {
  await waitFor(() => answering(nodes, vip).join() === owner, timeoutMs, `${vip} answered by ${owner} only`, 5);
  return performance.now() - t0;
}

describe('two L2Announcers over UDP with the default heartbeat settings', () => {
  let a: TestNode;
  let b: TestNode;
  const budget = failoverBudgetMs(parseL2Config({}));

  it('spread two VIPs: each node answers for one, with its MAC, and both agree on the owners', async () => {
    const cfg = await groupConfig();
    a = await startNode('node-a', cfg);
    b = await startNode('node-b', cfg);
    const t0 = performance.now();
    await ownedBy([a, b], VIP_A, 'node-a', t0);
    await ownedBy([a, b], VIP_B, 'node-b', t0);
    assert.deepEqual(a.maps.list(), [{ vip: VIP_A, ifindex: 2, vlan: 0, mac: MAC['node-a'] }]);
    assert.deepEqual(b.maps.list(), [{ vip: VIP_B, ifindex: 2, vlan: 0, mac: MAC['node-b'] }]);
    await waitFor(() => a.ann.status().vips.every((v) => v.owner !== null) && b.ann.status().vips.every((v) => v.owner !== null), 2000, 'both know both owners');
    for (const n of [a, b]) {
      assert.deepEqual(
        n.ann.status().vips.map((v) => [v.vip, v.service, v.owner]),
        [
          [VIP_A, 'default/web', 'node-a'],
          [VIP_B, 'default/api', 'node-b'],
        ],
      );
    }
    // Nobody took the other's VIP while it had not heard its peer yet.
    assert.deepEqual(a.garp.announced.map((g) => `${g.vip}@${g.iface}`), [`${VIP_A}@eth0`]);
    assert.deepEqual(b.garp.announced.map((g) => `${g.vip}@${g.iface}`), [`${VIP_B}@eth0`]);
    const st = a.ann.status();
    assert.deepEqual(st.vips[0].interfaces, ['eth0']);
    assert.equal(st.vips[0].local, true);
    assert.deepEqual(st.vips[1].interfaces, []);
    assert.equal(st.peers[0].name, 'node-b');
    assert.equal(st.peers[0].alive, true);
    assert.equal(st.counters.ownedVips, 1);
    assert.equal(st.takeovers, 1);
  });

  it('the owner drops off the network (link down, no heartbeats): it stops answering at once, the other answers within the target', async (t) => {
    const t0 = performance.now();
    b.transport.cut = true;
    b.links.setCarrier('eth0', false);
    assert.deepEqual(b.maps.list(), [], 'node-b removed its entries at once');
    assert.deepEqual(b.garp.cancelled, [VIP_B], 'and stopped announcing the VIP it lost');
    assert.equal(b.ann.status().health, 'down');
    const ms = await ownedBy([a, b], VIP_B, 'node-a', t0, 3000);
    t.diagnostic(`failover after ${Math.round(ms)} ms (budget ${budget} ms, target 3000 ms)`);
    assert.ok(ms < budget + 250, `failover took ${Math.round(ms)} ms`);
    assert.ok(ms > budget / 2, `node-a took over after ${Math.round(ms)} ms, before node-b could be dead`);
    assert.deepEqual(a.maps.vips(), [VIP_A, VIP_B]);
    assert.ok(a.garp.announced.some((g) => g.vip === VIP_B), 'gratuitous ARP for the VIP taken over');
    assert.equal(a.ann.metrics().takeoversTotal, 2);
  });

  it('the node comes back and does not take its VIP back', async () => {
    const heard = a.ann.metrics().heartbeatsReceived;
    b.transport.cut = false;
    b.links.setCarrier('eth0', true);
    // Ten heartbeats each way (2 s): every one of them was a chance to steal.
    await waitFor(() => a.ann.metrics().heartbeatsReceived >= heard + 10 && b.ann.status().peers[0].alive, 5000, 'node-b heard again');
    await waitFor(() => b.ann.metrics().heartbeatsReceived >= 10, 5000, 'node-b hears node-a');
    assert.deepEqual(answering([a, b], VIP_B), ['node-a']);
    assert.deepEqual(answering([a, b], VIP_A), ['node-a']);
    assert.deepEqual(b.maps.list(), []);
    assert.equal(b.ann.status().vips.find((v) => v.vip === VIP_B)!.owner, 'node-a');
  });

  it('the owner stops cleanly: the other takes over in well under 1 s (hand-over, no timeout)', async (t) => {
    const t0 = performance.now();
    await a.ann.stop();
    running.splice(running.indexOf(a), 1);
    assert.deepEqual(a.maps.list(), [], 'the stopped node removed its entries');
    const msA = await ownedBy([a, b], VIP_A, 'node-b', t0, 1000);
    const msB = await ownedBy([a, b], VIP_B, 'node-b', t0, 1000);
    t.diagnostic(`hand-over after ${Math.round(Math.max(msA, msB))} ms`);
    assert.ok(Math.max(msA, msB) < 1000);
    assert.equal(b.ann.status().peers[0].left, true);
    await stopNode(b);
  });
});

describe('start-up', () => {
  it('a node whose first sync comes after the dead-after window still gets its share: its peer waits while it is starting', async () => {
    const cfg = await groupConfig();
    const t0 = performance.now();
    const a = await startNode('node-a', cfg);
    const b = await startNode('node-b', cfg, { desired: false });
    // node-b heartbeats as starting; node-a must not take node-b's VIP meanwhile.
    await waitFor(
      () => {
        assert.deepEqual(a.maps.vips().filter((v) => v === VIP_B), [], 'node-a took node-b\'s VIP while node-b was starting');
        return performance.now() - t0 > 1.5 * 1000;
      },
      5000,
      'one and a half dead-after windows with node-b starting',
      20,
    );
    assert.equal(a.ann.status().peers[0].starting, true);
    await b.ann.setDesired(DESIRED);
    await ownedBy([a, b], VIP_A, 'node-a', t0);
    await ownedBy([a, b], VIP_B, 'node-b', t0);
    await stopNode(a);
    await stopNode(b);
  });
});

describe('a link down while heartbeats still get through (announcing and heartbeat networks apart)', () => {
  it('the owner tells its peer at once, which takes over without waiting for the dead-after window', async (t) => {
    const cfg = await groupConfig();
    const a = await startNode('node-a', cfg);
    const b = await startNode('node-b', cfg);
    await ownedBy([a, b], VIP_B, 'node-b', performance.now());
    const t0 = performance.now();
    b.links.setCarrier('eth0', false);
    const ms = await ownedBy([a, b], VIP_B, 'node-a', t0, 1000);
    t.diagnostic(`take-over after ${Math.round(ms)} ms`);
    assert.ok(ms < 500, `${Math.round(ms)} ms`);
    assert.equal(a.ann.status().peers[0].health, 'down');
    await stopNode(a);
    await stopNode(b);
  });
});

describe('a node whose link was down comes back with its held-back heartbeats in one burst', () => {
  it('the node that took over keeps the VIP: the oldest heartbeat, which still claims it, moves nothing', async () => {
    const cfg = await groupConfig();
    const a = await startNode('node-a', cfg);
    const b = await startNode('node-b', cfg);
    await ownedBy([a, b], VIP_B, 'node-b', performance.now());
    // The link goes: the kernel holds node-b's heartbeats before node-b notices.
    b.transport.hold();
    await waitFor(() => b.transport.waiting().some((h) => h.health === 'up' && h.claims.includes(VIP_B)), 2000, 'a held heartbeat that claims VIP_B');
    b.links.setCarrier('eth0', false);
    await ownedBy([a, b], VIP_B, 'node-a', performance.now(), 3000);
    const takeovers = a.ann.metrics().takeoversTotal;
    const cancelled = a.garp.cancelled.length;
    // It comes back: the held heartbeats (claiming, then link down, then up) arrive together.
    assert.ok(b.transport.waiting().some((h) => h.health === 'down'), 'heartbeats with the link down are held too');
    b.links.setCarrier('eth0', true);
    await b.transport.release();
    const t0 = performance.now();
    await waitFor(
      () => {
        assert.deepEqual(answering([a, b], VIP_B), ['node-a'], 'VIP_B answered by node-a alone throughout');
        return performance.now() - t0 > 2000 && b.ann.status().peers[0].alive;
      },
      5000,
      'two seconds after the burst, node-b heard again',
      2,
    );
    assert.equal(a.ann.metrics().takeoversTotal, takeovers, 'node-a never gave VIP_B up and took it again');
    assert.equal(a.garp.cancelled.length, cancelled, 'node-a never stopped announcing VIP_B');
    assert.equal(b.ann.status().vips.find((v) => v.vip === VIP_B)!.owner, 'node-a');
    await stopNode(a);
    await stopNode(b);
  });
});

describe('a healed split brain', () => {
  it('while cut apart both nodes answer for both VIPs; once healed exactly one answers for each', async (t) => {
    const cfg = await groupConfig();
    const a = await startNode('node-a', cfg);
    const b = await startNode('node-b', cfg);
    await ownedBy([a, b], VIP_A, 'node-a', performance.now());
    await ownedBy([a, b], VIP_B, 'node-b', performance.now());
    a.transport.cut = true;
    await waitFor(() => answering([a, b], VIP_A).length === 2 && answering([a, b], VIP_B).length === 2, 5000, 'both nodes claim both VIPs');
    const t0 = performance.now();
    a.transport.cut = false;
    const ms = Math.max(await ownedBy([a, b], VIP_A, 'node-a', t0), await ownedBy([a, b], VIP_B, 'node-b', t0));
    t.diagnostic(`conflict resolved after ${Math.round(ms)} ms`);
    assert.ok(ms < 1000, `${Math.round(ms)} ms`);
    await stopNode(a);
    await stopNode(b);
  });
});

describe('start and setDesired', () => {
  it('refuses a VIP that is not IPv4, naming the entry, and keeps the previous set', async () => {
    const cfg = await groupConfig();
    const a = await startNode('node-a', parseL2Config({ ...cfg, peers: [cfg.peers[0]] }));
    await waitFor(() => a.maps.vips().length === 2, 3000, 'alone, node-a owns both');
    await assert.rejects(a.ann.setDesired([{ vip: VIP_A, service: 'x/y' }, { vip: '2001:db8::1', service: 'x/z' }]), /^Error: vips\[1\]\.vip: "2001:db8::1" is not an IPv4 address/);
    assert.equal(a.ann.status().vips.length, 2);
    await a.ann.setDesired([{ vip: VIP_A, service: 'default/web' }]);
    assert.deepEqual(a.maps.vips(), [VIP_A], 'a VIP no longer desired is released at once');
    await stopNode(a);
  });

  it('refuses to start on an interface without the XDP program, naming the config key', async () => {
    const cfg = parseL2Config({ interfaces: ['eth1'] });
    await assert.rejects(
      L2Announcer.start(cfg, { nodeName: 'node-a', xdpInterfaces: ['eth0'], maps: new FakeL2Maps(), garp: new FakeGarpSender(), links: new FakeLinkMonitor([link('node-a')]) }),
      /l2\.interfaces\[0\]: interface eth1 not found/,
    );
  });

  it('refuses to start when the heartbeat port is taken, naming the config keys', async () => {
    const [port] = await freePorts();
    const cfg = parseL2Config({ port, bindAddress: '127.0.0.1' });
    const opts = () => ({ nodeName: 'node-a', xdpInterfaces: ['eth0'], maps: new FakeL2Maps(), garp: new FakeGarpSender(), links: new FakeLinkMonitor([link('node-a')]) });
    const first = await L2Announcer.start(cfg, opts());
    try {
      await assert.rejects(L2Announcer.start(cfg, opts()), /^Error: l2\.port \/ l2\.bindAddress .*cannot bind 127\.0\.0\.1:\d+: .*EADDRINUSE/);
    } finally {
      await first.stop();
    }
  });

  it('at start, keeps the entries an earlier run left for its own interface (answered until the first setDesired decides) and removes the others', async () => {
    const maps = new FakeL2Maps();
    const mine = { vip: '192.0.2.99', ifindex: 2, vlan: 0, mac: MAC['node-a'] };
    maps.put([mine, { vip: '192.0.2.98', ifindex: 2, vlan: 0, mac: MAC['node-b'] }, { vip: '192.0.2.97', ifindex: 7, vlan: 0, mac: MAC['node-a'] }, { vip: '192.0.2.96', ifindex: 2, vlan: 100, mac: MAC['node-a'] }]);
    const [port] = await freePorts();
    const garp = new FakeGarpSender();
    const ann = await L2Announcer.start(parseL2Config({ port, bindAddress: '127.0.0.1' }), { nodeName: 'node-a', xdpInterfaces: ['eth0'], maps, garp, links: new FakeLinkMonitor([link('node-a')]) });
    try {
      assert.deepEqual(maps.list(), [mine], 'another MAC, ifindex or VLAN than eth0 untagged: removed');
      assert.deepEqual(ann.status().adopted, ['192.0.2.99']);
      assert.equal(ann.metrics().ownedVips, 1);
      assert.deepEqual(garp.announced, [], 'clients already find it here: no gratuitous ARP');
      await ann.setDesired([{ vip: VIP_A, service: 'default/web' }]);
      assert.deepEqual(maps.vips(), [VIP_A], 'the first setDesired decides: the adopted VIP no longer desired goes');
      assert.deepEqual(ann.status().adopted, []);
    } finally {
      await ann.stop();
    }
    assert.deepEqual(maps.list(), [], 'a stop that is not a restart removes every entry');
  });

  it('a start whose links are all down adopts nothing and removes the entries', async () => {
    const maps = new FakeL2Maps();
    maps.put([{ vip: '192.0.2.99', ifindex: 2, vlan: 0, mac: MAC['node-a'] }]);
    const [port] = await freePorts();
    const ann = await L2Announcer.start(parseL2Config({ port, bindAddress: '127.0.0.1' }), { nodeName: 'node-a', xdpInterfaces: ['eth0'], maps, garp: new FakeGarpSender(), links: new FakeLinkMonitor([link('node-a', false)]) });
    try {
      assert.deepEqual(maps.list(), []);
      assert.deepEqual(ann.status().adopted, []);
    } finally {
      await ann.stop();
    }
  });

  it('the links go down before the first setDesired: the adopted VIPs are given up at once, and not taken back when they return', async () => {
    const maps = new FakeL2Maps();
    maps.put([{ vip: '192.0.2.99', ifindex: 2, vlan: 0, mac: MAC['node-a'] }]);
    const [port] = await freePorts();
    const links = new FakeLinkMonitor([link('node-a')]);
    const ann = await L2Announcer.start(parseL2Config({ port, bindAddress: '127.0.0.1' }), { nodeName: 'node-a', xdpInterfaces: ['eth0'], maps, garp: new FakeGarpSender(), links });
    try {
      assert.deepEqual(maps.vips(), ['192.0.2.99']);
      links.setCarrier('eth0', false);
      assert.deepEqual(maps.list(), []);
      links.setCarrier('eth0', true);
      assert.deepEqual(maps.list(), []);
      assert.deepEqual(ann.status().adopted, []);
    } finally {
      await ann.stop();
    }
  });
});

describe('agent restarts: stop({ restart: true }) and the next start over the same ARP map', () => {
  /** Start `name` again over its ARP map (a new agent process: new transport, links, gratuitous ARP). */
  async function restartNode(n: TestNode, config: L2Config, opts: { desired?: boolean } = {}): Promise<TestNode> {
    const garp = new FakeGarpSender();
    const links = new FakeLinkMonitor([link(n.name)]);
    const transport = new HoldingTransport();
    const ann = await L2Announcer.start(config, { nodeName: n.name, xdpInterfaces: ['eth0'], maps: n.maps, garp, links, transport });
    if (opts.desired) await ann.setDesired(DESIRED);
    const m = { name: n.name, ann, maps: n.maps, garp, links, transport };
    running.push(m);
    return m;
  }

  /** Stop as an agent restart would; the node leaves `running`. */
  async function stopForRestart(n: TestNode): Promise<void> {
    await n.ann.stop({ restart: true });
    running.splice(running.indexOf(n), 1);
  }

  /** Wait `ms`, checking all along that `vip` is answered by exactly `owner`. */
  async function holdsFor(nodes: TestNode[], vip: string, owner: Name, ms: number, what: string): Promise<void> {
    const t0 = performance.now();
    await waitFor(
      () => {
        assert.deepEqual(answering(nodes, vip), [owner], `${vip} answered by ${owner} alone while ${what}`);
        return performance.now() - t0 > ms;
      },
      ms + 5000,
      what,
      10,
    );
  }

  it('a restarting owner keeps answering, its peer holds the VIP past the dead-after window, and the next start adopts it without a move', async () => {
    const cfg = await groupConfig();
    const a = await startNode('node-a', cfg);
    const b = await startNode('node-b', cfg);
    await ownedBy([a, b], VIP_A, 'node-a', performance.now());
    await ownedBy([a, b], VIP_B, 'node-b', performance.now());
    await stopForRestart(a);
    assert.deepEqual(a.maps.vips(), [VIP_A], 'the restarting node left its entry for XDP to answer with');
    await waitFor(() => b.ann.status().peers[0].restarting, 2000, 'node-b to hear node-a is restarting');
    // Twice the dead-after window: a silent node would have lost the VIP by then.
    await holdsFor([a, b], VIP_A, 'node-a', 2 * failoverBudgetMs(cfg), 'node-a restarts');
    assert.equal(b.ann.status().peers[0].alive, true, 'held alive');
    assert.equal(b.ann.metrics().takeoversTotal, 1, 'node-b took nothing over');

    // The next agent: adopts VIP_A and claims it while starting (no setDesired yet).
    const a2 = await restartNode(a, cfg);
    assert.deepEqual(a2.ann.status().adopted, [VIP_A]);
    await waitFor(() => !b.ann.status().peers[0].restarting && b.ann.status().peers[0].starting, 2000, 'node-b to hear the new node-a, starting');
    await holdsFor([a2, b], VIP_A, 'node-a', failoverBudgetMs(cfg), 'node-a is starting');
    await a2.ann.setDesired(DESIRED);
    await waitFor(() => !b.ann.status().peers[0].starting, 2000, 'node-b to hear node-a past its first sync');
    await holdsFor([a2, b], VIP_A, 'node-a', 500, 'node-a decided');
    assert.deepEqual(answering([a2, b], VIP_B), ['node-b']);
    assert.deepEqual(a2.garp.announced, [], 'no gratuitous ARP: the VIP never moved');
    assert.equal(a2.ann.metrics().takeoversTotal, 0);
    assert.equal(b.ann.metrics().takeoversTotal, 1);
    assert.deepEqual(a2.ann.status().adopted, []);
    await stopNode(a2);
    await stopNode(b);
  });

  it('the hold is bounded: a node that does not come back within l2.heartbeat.restartHoldMs loses its VIPs', async () => {
    const cfg = parseL2Config({ ...(await groupConfig()), heartbeat: { restartHoldMs: 1000 } });
    const a = await startNode('node-a', cfg);
    const b = await startNode('node-b', cfg);
    await ownedBy([a, b], VIP_A, 'node-a', performance.now());
    await stopForRestart(a);
    await waitFor(() => b.ann.status().peers[0].restarting, 2000, 'node-b to hear node-a is restarting');
    const t0 = performance.now();
    await waitFor(() => b.maps.vips().includes(VIP_A), 5000, 'node-b to take VIP_A once the hold is over');
    assert.ok(performance.now() - t0 < 1000 + failoverBudgetMs(cfg), 'within the hold plus a liveness check');
    assert.equal(b.ann.status().peers[0].alive, false);
    assert.ok(b.garp.announced.some((g) => g.vip === VIP_A), 'gratuitous ARP moves the clients');
    await stopNode(b);
  });

  it('kill -9 (the peers are not told): the peer takes the VIP after the dead-after window; the next start, starting, leaves it to the peer', async () => {
    const cfg = await groupConfig();
    const a = await startNode('node-a', cfg);
    const b = await startNode('node-b', cfg);
    await ownedBy([a, b], VIP_A, 'node-a', performance.now());
    // Nothing reaches node-b: as if the process died.
    a.transport.cut = true;
    await stopForRestart(a);
    await waitFor(() => b.maps.vips().includes(VIP_A), 3000, 'node-b to take VIP_A after the dead-after window');
    assert.deepEqual(a.maps.vips(), [VIP_A], 'the dead node’s XDP still answers too');
    const takeovers = b.ann.metrics().takeoversTotal;
    const a2 = await restartNode(a, cfg);
    await waitFor(() => a2.maps.vips().length === 0, 2000, 'the restarted node-a to leave VIP_A to node-b');
    await a2.ann.setDesired(DESIRED);
    await holdsFor([a2, b], VIP_A, 'node-b', 1000, 'node-a decided');
    assert.equal(b.ann.metrics().takeoversTotal, takeovers, 'node-b kept VIP_A throughout');
    await stopNode(a2);
    await stopNode(b);
  });

  it('stop({ restart: true }) before the first setDesired keeps the adopted VIPs for the next start', async () => {
    const cfg = await groupConfig();
    const maps = new FakeL2Maps();
    maps.put([{ vip: VIP_A, ifindex: 2, vlan: 0, mac: MAC['node-a'] }]);
    const ann = await L2Announcer.start(parseL2Config({ ...cfg, peers: [cfg.peers[0]] }), { nodeName: 'node-a', xdpInterfaces: ['eth0'], maps, garp: new FakeGarpSender(), links: new FakeLinkMonitor([link('node-a')]) });
    await ann.stop({ restart: true });
    assert.deepEqual(maps.vips(), [VIP_A]);
  });
});
