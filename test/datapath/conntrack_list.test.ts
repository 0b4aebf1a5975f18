/**
 * `xlb ct list` (src/datapath/conntrack_list.ts) against a loaded xlb_xdp
 * object: flows placed by the program under BPF_PROG_TEST_RUN and entries
 * written as an earlier agent would have left them are listed with their
 * client, frontend, backend, SNAT port and state; the filters select; the
 * totals count every entry; a table larger than one batch is read whole;
 * the count for metrics (countConntrack) agrees with the listing's totals.
 *
 * Run as root: node --import tsx --test test/datapath/conntrack_list.test.ts
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Datapath, XDP, BE_LOCAL, CT_SNAT, CT_ESTABLISHED, buildObjects } from './harness.js';
import { countConntrack, listConntrack, type ConntrackFilter } from '../../src/datapath/conntrack_list.js';
import { tcpPacket, udpPacket, PROTO, TCP_FLAG } from '../helpers/packet.js';

const NODE = '198.18.0.11';
const VIP = '203.0.113.10';
const WEB = { id: 1, port: 80, backends: [{ id: 1, addr: '198.19.1.1', port: 8080 }] };
const DNS = { id: 2, port: 53, backend: { id: 2, addr: '198.19.1.2', port: 5353 } };

let dp: Datapath;
before(() => {
  buildObjects();
  dp = Datapath.load({ nodeAddr: NODE });
  for (const b of WEB.backends) dp.setBackend(b.id, { addr: b.addr, port: b.port, proto: PROTO.TCP, flags: BE_LOCAL });
  dp.addFrontend(VIP, WEB.port, PROTO.TCP, WEB.id);
  dp.setTable(WEB.id, [1, 1, 1]);
  dp.setBackend(DNS.backend.id, { ...DNS.backend, proto: PROTO.UDP, flags: BE_LOCAL });
  dp.addFrontend(VIP, DNS.port, PROTO.UDP, DNS.id);
  dp.setTable(DNS.id, [2, 2, 2]);
});
after(() => dp?.close());

const list = (filter: Partial<ConntrackFilter> = {}) =>
  listConntrack({ conntrack: dp.map('xlb_conntrack'), affinity: dp.map('xlb_affinity'), snat: dp.map('xlb_snat_sets') }, { limit: 1000, ...filter }, {
    serviceOf: (id) => ({ 1: 'default/web:http', 2: 'default/dns:dns' })[id],
    now: dp.nowTicks(),
    tickSeconds: 1,
  });

test('flows the program placed are listed with client, frontend, backend, state and service', () => {
  const syn = tcpPacket({ ip: { src: '192.0.2.7', dst: VIP }, tcp: { sport: 40001, dport: WEB.port, flags: TCP_FLAG.SYN } });
  assert.equal(dp.ingress.testRun(syn).retval, XDP.PASS, 'the SYN goes to the local backend');
  const dns = udpPacket({ ip: { src: '192.0.2.8', dst: VIP }, udp: { sport: 40002, dport: DNS.port, payload: Buffer.from('q') } });
  assert.equal(dp.ingress.testRun(dns).retval, XDP.PASS, 'the query goes to the local backend');
  const r = list();
  assert.equal(r.total, 2);
  assert.deepEqual(
    r.entries.map((e) => [e.client, e.frontend, e.protocol, e.backend, e.state, e.service, e.snatPort]).sort(),
    [
      ['192.0.2.7:40001', '203.0.113.10:80', 'TCP', '198.19.1.1:8080', 'syn', 'default/web:http', undefined],
      ['192.0.2.8:40002', '203.0.113.10:53', 'UDP', '198.19.1.2:5353', 'udp', 'default/dns:dns', undefined],
    ],
  );
  for (const e of r.entries) assert.ok(e.idleSeconds !== undefined && e.idleSeconds >= 0 && e.idleSeconds <= 5, `idle ${e.idleSeconds} s right after the packet`);
  assert.equal(r.affinityEntries, 0);
});

test('filters select by client, frontend, backend, service and protocol; totals count every entry', () => {
  const now = dp.nowTicks();
  dp.putConntrack({ saddr: '192.0.2.50', daddr: VIP, sport: 50000, dport: WEB.port, proto: PROTO.TCP }, {
    backend_id: 9, backend_addr: '198.19.9.9', backend_port: 8080, snat_port: 61000, service_id: WEB.id, flags: CT_SNAT | CT_ESTABLISHED, seen: now,
  });
  dp.putConntrack({ saddr: '192.0.2.51', daddr: VIP, sport: 50001, dport: WEB.port, proto: PROTO.TCP }, {
    backend_id: 9, backend_addr: '198.19.9.9', backend_port: 8080, snat_port: 61001, service_id: WEB.id, flags: CT_SNAT | CT_ESTABLISHED, seen: now,
  });
  const all = list();
  assert.equal(all.total, 4);
  assert.deepEqual(all.snatPortsByBackend, [{ backend: '198.19.9.9:8080', ports: 2 }]);
  const remote = all.entries.find((e) => e.client === '192.0.2.50:50000')!;
  assert.deepEqual([remote.snatPort, remote.state, remote.flags], [61000, 'established', ['snat', 'established']]);

  const clients = (f: Partial<ConntrackFilter>) => list(f).entries.map((e) => e.client).sort();
  assert.deepEqual(clients({ src: { addr: '192.0.2.50' } }), ['192.0.2.50:50000']);
  assert.deepEqual(clients({ src: { addr: '192.0.2.51', port: 50000 } }), [], 'the port must match too');
  assert.deepEqual(clients({ dst: { addr: VIP, port: DNS.port } }), ['192.0.2.8:40002']);
  assert.deepEqual(clients({ backend: { addr: '198.19.9.9', port: 8080 } }), ['192.0.2.50:50000', '192.0.2.51:50001']);
  assert.deepEqual(clients({ serviceIds: new Set([DNS.id]) }), ['192.0.2.8:40002']);
  assert.deepEqual(clients({ protocol: 'UDP' }), ['192.0.2.8:40002']);
  const limited = list({ limit: 1, protocol: 'TCP' });
  assert.deepEqual([limited.entries.length, limited.matched, limited.total], [1, 3, 4], 'the limit cuts the list, not the counts');
});

test('a table larger than one batch is read whole', () => {
  const now = dp.nowTicks();
  const n = 10_000;
  for (let i = 0; i < n; i++) {
    dp.putConntrack({ saddr: `198.18.${128 + (i >> 8)}.${i & 255}`, daddr: VIP, sport: 1024 + (i % 60000), dport: WEB.port, proto: PROTO.TCP }, {
      backend_id: 1, backend_addr: '198.19.1.1', backend_port: 8080, service_id: WEB.id, flags: CT_ESTABLISHED, seen: now,
    });
  }
  const r = list({ limit: 5, backend: { addr: '198.19.1.1' } });
  assert.equal(r.total, n + 4);
  assert.equal(r.matched, n + 1, 'the placed SYN and the 10,000 written');
  assert.equal(dp.map('xlb_conntrack').entries(1000).length, n + 2, 'in batches of 1,000 too (the two SNATed flows are in xlb_snat_sets)');
});

test('the count for metrics agrees with the listing: entries, SNAT ports, the busiest backend', async () => {
  const now = dp.nowTicks();
  // Three more SNATed flows to a second remote backend: it becomes the busiest.
  for (let i = 0; i < 3; i++) {
    dp.putConntrack({ saddr: '192.0.2.60', daddr: VIP, sport: 51000 + i, dport: WEB.port, proto: PROTO.TCP }, {
      backend_id: 8, backend_addr: '198.19.8.8', backend_port: 8080, snat_port: 62000 + i, service_id: WEB.id, flags: CT_SNAT | CT_ESTABLISHED, seen: now,
    });
  }
  const listed = list({ limit: 0 });
  assert.deepEqual(listed.snatPortsByBackend, [{ backend: '198.19.8.8:8080', ports: 3 }, { backend: '198.19.9.9:8080', ports: 2 }]);
  const counted = await countConntrack(dp.map('xlb_conntrack'), dp.map('xlb_snat_sets'));
  assert.deepEqual(counted, { entries: listed.total, snatPorts: 5, snatBackends: 2, snatPortsMaxPerBackend: 3 });
});
