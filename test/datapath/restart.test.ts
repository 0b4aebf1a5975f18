/**
 * The datapath outlives the agent: a stop leaves the programs attached and
 * the maps pinned; the next start takes them over (programs replaced in
 * place, maps reused with their entries, IDs and tables adopted by the
 * controller so that its first sync writes nothing); a changed layout or
 * size is migrated; an uninstall removes everything. On a veth pair and a
 * test cgroup of a private network namespace.
 *
 * Run as root: node --import tsx --test test/datapath/restart.test.ts
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Datapath, uninstallDatapath, type DatapathOptions } from '../../src/datapath/datapath.js';
import { BpfMap, BPF_MAP_TYPE, PIN_BASE, xdpProgramId } from '../../src/datapath/bpf.js';
import { decode, encode } from '../../src/datapath/codec.js';
import { findSnatFlow, readSnatWays, snatSetOfPort, SNAT_PORTS_DEFAULT } from '../../src/datapath/snat_sets.js';
import { ipToU32 } from '../../src/util/ip.js';
import { fingerprint, layoutOf, recordLayout } from '../../src/datapath/layout.js';
import { ServiceController } from '../../src/services/controller.js';
import { normalizeObjects } from '../../src/sources/normalize.js';
import { createCgroup, ensureCgroup2Root, removeCgroup } from '../../src/util/cgroup.js';
import { enterNetns } from '../../src/util/netns.js';
import { buildObjects, flowKey, CT_SNAT, CT_ESTABLISHED } from './harness.js';
import { tcpPacket, TCP_FLAG } from '../helpers/packet.js';
import { removeNetns } from '../helpers/system.js';

const sfx = randomBytes(3).toString('hex');
const NS = `xlbt-restart-${sfx}`;
const instance = `test-restart-${sfx}`;
const pinDir = path.join(PIN_BASE, instance);
let cgroup: string;
let leave: (() => void) | undefined;

const NODE = '198.18.0.11';
const VIP = '203.0.113.10';
const sizing = { minTableSize: 251, maxTableSize: 131071, backendMultiplier: 100 };
const node = { name: 'node1', addresses: [NODE] };

/** Two services: web on the VIP (two local backends) and a ClusterIP. */
function state(withDns = true) {
  const svc = (name: string, spec: object, status: object = {}) => ({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'default' }, spec, status });
  const slice = (name: string, ips: string[], port: number) => ({
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: `${name}-1`, namespace: 'default', labels: { 'kubernetes.io/service-name': name } },
    addressType: 'IPv4',
    ports: [{ name: 'p', port, protocol: 'TCP' }],
    endpoints: ips.map((ip) => ({ addresses: [ip], conditions: { ready: true }, nodeName: 'node1' })),
  });
  const objects = [
    svc('web', { type: 'LoadBalancer', clusterIP: '198.18.128.10', ports: [{ name: 'p', port: 80, targetPort: 8080, nodePort: 30080 }] }, { loadBalancer: { ingress: [{ ip: VIP }] } }),
    slice('web', ['198.19.1.11', '198.19.1.12'], 8080),
    ...(withDns ? [svc('dns', { type: 'ClusterIP', clusterIP: '198.18.128.53', ports: [{ name: 'p', port: 53, targetPort: 53 }] }), slice('dns', ['198.19.1.2'], 53)] : []),
  ];
  const r = normalizeObjects(objects);
  assert.deepEqual(r.issues, []);
  return r.state;
}

function options(extra: Partial<DatapathOptions> = {}): DatapathOptions {
  return {
    instance,
    interfaces: ['xr0'],
    nodeAddress: NODE,
    xdpMode: 'native',
    snatPorts: { min: 61000, max: 65535 },
    conntrackSize: 2048,
    socketLB: { cgroupRoot: cgroup, hostNamespaceOnly: false },
    ...extra,
  };
}

/** A SYN from a client to the VIP through XDP: its conntrack entry is the state a restart must keep. */
function synThrough(dp: Datapath, sport: number): void {
  const prog = (dp as unknown as { xdpObj: { program(n: string): { testRun(b: Buffer): { retval: number } } } }).xdpObj.program('xlb_xdp_ingress');
  assert.equal(prog.testRun(tcpPacket({ ip: { src: '192.0.2.7', dst: VIP }, tcp: { sport, dport: 80, flags: TCP_FLAG.SYN } })).retval, 2 /* XDP_PASS: local backend */);
}
const conntrackPin = () => fs.readdirSync(pinDir).find((f) => f.startsWith('xlb_conntrack_v'))!;
const flow = (sport: number) => flowKey({ saddr: '192.0.2.7', daddr: VIP, sport, dport: 80, proto: 6 });

before(async () => {
  buildObjects();
  execFileSync('ip', ['netns', 'add', NS]);
  execFileSync('ip', ['-n', NS, 'link', 'add', 'xr0', 'type', 'veth', 'peer', 'name', 'xr1']);
  for (const l of ['lo', 'xr0', 'xr1']) execFileSync('ip', ['-n', NS, 'link', 'set', l, 'up']);
  cgroup = path.join(ensureCgroup2Root(), `xlb-test-restart-${sfx}`);
  createCgroup(cgroup);
  leave = enterNetns(NS);
});

after(async () => {
  try {
    uninstallDatapath({ instance, interfaces: ['xr0'], podInterfaces: [] });
  } finally {
    leave?.();
    removeNetns(NS);
    await removeCgroup(cgroup);
    fs.rmSync(pinDir, { recursive: true, force: true });
  }
});

describe('a restart is not an uninstall', () => {
  test('stop keeps programs and maps; the next start replaces the programs in place, keeps conntrack, and the controller writes nothing', () => {
    const first = Datapath.start(options());
    const ctl1 = new ServiceController(first.lbmaps, node, sizing);
    ctl1.sync(state());
    synThrough(first, 40001);
    const ifindex = first.attachments[0].ifindex;
    const xdpBefore = xdpProgramId(ifindex, 'native');
    const ctBefore = BpfMap.openPinned(path.join(pinDir, conntrackPin()));
    const entry = ctBefore.lookup(flow(40001));
    ctBefore.close();
    assert.ok(entry, 'the SYN made a conntrack entry');
    first.stop();

    // Between the agents: the program is attached, the hooks' links and the maps pinned.
    assert.equal(xdpProgramId(ifindex, 'native'), xdpBefore, 'XDP stays attached');
    assert.ok(fs.existsSync(path.join(pinDir, 'links', 'cgroup_connect4')), 'the socket hooks stay attached through their pinned links');

    const second = Datapath.start(options());
    try {
      assert.deepEqual(
        second.restored.filter((r) => r.outcome !== 'reused'),
        [],
        'every map kept',
      );
      const xdpAfter = xdpProgramId(second.attachments[0].ifindex, 'native');
      assert.ok(xdpAfter !== 0 && xdpAfter !== xdpBefore, 'a new program, attached in place of the old one');
      assert.deepEqual(second.lbmaps.maps.conntrack.lookup(flow(40001)), entry, 'the conntrack entry is kept');
      // Before the new agent's first sync, the kept tables place new flows.
      synThrough(second, 40002);
      const ctl2 = new ServiceController(second.lbmaps, node, sizing);
      const r = ctl2.sync(state());
      assert.deepEqual(r.writes, { frontends: 0, frontendDeletes: 0, backends: 0, backendDeletes: 0, tables: 0, tableDeletes: 0, sourceRanges: 0 });
      for (const s of ctl2.services()) assert.deepEqual(s.serviceIds, ctl1.services().find((x) => x.key === s.key)!.serviceIds);
      // A service deleted while no agent ran goes with the first sync.
      const ctl3 = new ServiceController(second.lbmaps, node, sizing);
      assert.ok(ctl3.sync(state(false)).writes.frontendDeletes >= 1);
    } finally {
      second.stop();
    }
  });

  test('a layout change migrates the entries it can, field by field; a size change copies them', () => {
    // Pretend the pinned conntrack map was laid out by an older version in
    // which service_id was named owner: its pin carries that layout's fingerprint.
    const now = conntrackPin();
    const probe = BpfMap.openPinned(path.join(pinDir, now));
    const desc = layoutOf('xlb_conntrack', { type: probe.type, keySize: probe.keySize, valueSize: probe.valueSize, flags: 0 });
    probe.close();
    const old = { ...desc, value: desc.value.map(([n, o, l]) => [n === 'service_id' ? 'owner' : n, o, l] as [string, number, number]) };
    const oldFp = fingerprint(old);
    const layouts = BpfMap.openPinned(path.join(pinDir, 'xlb_layouts'));
    recordLayout(layouts, oldFp, old);
    layouts.close();
    fs.renameSync(path.join(pinDir, now), path.join(pinDir, `xlb_conntrack_v${oldFp}`));

    const dp = Datapath.start(options({ conntrackSize: 4096 }));
    try {
      const ct = dp.restored.find((r) => r.map === 'xlb_conntrack')!;
      assert.equal(ct.outcome, 'migrated');
      assert.ok(ct.entries! >= 1);
      const e = decode('xlb_ct_entry', dp.lbmaps.maps.conntrack.lookup(flow(40001))!);
      assert.equal(e.service_id, 0, 'a field the old layout did not have starts at zero');
      assert.ok(e.backend_id > 0 && e.backend_addr.startsWith('198.19.1.'), 'the fields it had are carried over');
      const rnat = dp.restored.find((r) => r.map === 'xlb_rnat')!;
      assert.equal(rnat.outcome, 'migrated', 'conntrackSize 2048 to 4096: copied');
      assert.match(rnat.reason!, /size changed/);
      assert.equal(dp.lbmaps.maps.conntrack.maxEntries, 4096);
      assert.ok(!fs.readdirSync(pinDir).includes(`xlb_conntrack_v${oldFp}`), 'the old pin is gone');
    } finally {
      dp.stop();
    }
  });

  test("an upgrade from an agent that kept SNATed flows in xlb_conntrack moves them, with their ports, into xlb_snat_sets; local flows' replies stay", () => {
    // An older agent: SNATed flows in xlb_conntrack, their ports in xlb_snat,
    // and xlb_rnat keyed by the reply's 5-tuple, valued without it (24 bytes).
    const backend = '198.19.2.10';
    const snatFlow = { saddr: '192.0.2.9', daddr: VIP, sport: 45000, dport: 80, proto: 6 };
    const ct = BpfMap.openPinned(path.join(pinDir, conntrackPin()));
    ct.update(flowKey(snatFlow), encode('xlb_ct_entry', { backend_id: 7, backend_addr: backend, backend_port: 8080, snat_port: 62000, service_id: 1, flags: CT_SNAT | CT_ESTABLISHED, seen: 5 }));
    ct.close();
    const retired = BpfMap.create({ type: BPF_MAP_TYPE.ARRAY, name: 'xlb_snat', keySize: 4, valueSize: 40, maxEntries: 16 });
    retired.pin(path.join(pinDir, 'xlb_snat_v0123456789abcdef'));
    retired.close();
    const rnatPin = fs.readdirSync(pinDir).find((f) => f.startsWith('xlb_rnat_v'));
    if (rnatPin) fs.rmSync(path.join(pinDir, rnatPin));
    const key = layoutOf('xlb_rnat', { type: BPF_MAP_TYPE.LRU_HASH, keySize: 16, valueSize: 24, flags: 0 }).key;
    const old = {
      type: BPF_MAP_TYPE.LRU_HASH, flags: 0, keySize: 16, valueSize: 24, key,
      value: [['vip', 0, 4], ['client_addr', 4, 4], ['vip_port', 8, 2], ['client_port', 10, 2], ['service_id', 12, 4], ['flags', 16, 4], ['seen', 20, 4]] as Array<[string, number, number]>,
    };
    const oldFp = fingerprint(old);
    const layouts = BpfMap.openPinned(path.join(pinDir, 'xlb_layouts'));
    recordLayout(layouts, oldFp, old);
    layouts.close();
    const legacy = BpfMap.create({ type: BPF_MAP_TYPE.LRU_HASH, name: 'xlb_rnat', keySize: 16, valueSize: 24, maxEntries: 4096 });
    const reply = { saddr: backend, daddr: NODE, sport: 8080, dport: 62000, proto: 6 };
    const v = Buffer.alloc(24);
    v.writeUInt32BE(ipToU32(VIP), 0);
    v.writeUInt32BE(ipToU32('192.0.2.9'), 4);
    v.writeUInt16BE(80, 8);
    v.writeUInt16BE(45000, 10);
    v.writeUInt32LE(1, 12);
    v.writeUInt32LE(CT_SNAT, 16);
    v.writeUInt32LE(1, 20);
    legacy.update(flowKey(reply), v);
    const local = { saddr: '198.19.1.11', daddr: '192.0.2.9', sport: 8080, dport: 45001, proto: 6 };
    v.writeUInt16BE(45001, 10);
    v.writeUInt32LE(0, 16);
    legacy.update(flowKey(local), v);
    legacy.pin(path.join(pinDir, `xlb_rnat_v${oldFp}`));
    legacy.close();

    const dp = Datapath.start(options({ conntrackSize: 4096 }));
    try {
      assert.equal(dp.restored.find((r) => r.map === 'xlb_rnat')!.outcome, 'migrated');
      const sets = dp.restored.find((r) => r.map === 'xlb_snat_sets')!;
      assert.deepEqual([sets.outcome, sets.entries], ['migrated', 1], sets.reason);
      const objs = dp as unknown as { xdpObj: { map(n: string): BpfMap } };
      const setsMap = objs.xdpObj.map('xlb_snat_sets');
      const sizes = { sets: setsMap.maxEntries, portMin: SNAT_PORTS_DEFAULT.min, portMax: SNAT_PORTS_DEFAULT.max };
      const moved = findSnatFlow(setsMap, snatFlow, sizes)!;
      assert.deepEqual({ port: moved.ct.snat_port, backend: moved.ct.backend_addr, flags: moved.ct.flags }, { port: 62000, backend, flags: CT_SNAT | CT_ESTABLISHED }, 'the flow keeps its port');
      // Its reply finds it: the flow itself, or the pointer in the port's set.
      const portSet = snatSetOfPort(62000, sizes);
      const holder = readSnatWays(setsMap).find((w) => w.set === portSet && w.ct.snat_port === 62000 && w.ct.backend_addr === backend);
      assert.ok(holder && (holder.pointer ? holder.flow.sport === 45000 : holder.set === moved.set));
      assert.equal(dp.lbmaps.maps.conntrack.lookup(flowKey(snatFlow)), undefined, 'and left xlb_conntrack');
      assert.equal(objs.xdpObj.map('xlb_rnat').lookup(flowKey(reply)), undefined, "the old SNAT reply entry is gone");
      const kept = decode('xlb_reply_slot', objs.xdpObj.map('xlb_rnat').lookup(flowKey(local))!);
      assert.deepEqual([kept.reply_saddr, kept.reply_dport, kept.client_port], ['198.19.1.11', 45001, 45001], 'a local flow\'s entry stays, with its tuple');
      assert.ok(!fs.readdirSync(pinDir).some((f) => /^xlb_snat_v/.test(f)), 'the retired xlb_snat pin is removed');
    } finally {
      dp.stop();
    }
  });

  test('uninstall detaches XDP, tc and the socket hooks and removes the pins', () => {
    const dp = Datapath.start(options({ conntrackSize: 4096 }));
    const ifindex = dp.attachments[0].ifindex;
    dp.stop({ uninstall: true });
    assert.equal(xdpProgramId(ifindex, 'native'), 0);
    assert.equal(fs.existsSync(pinDir), false);
    assert.equal(execFileSync('bpftool', ['cgroup', 'show', cgroup]).toString().includes('xlb_sock'), false);
  });
});

