/**
 * Layer 2 VIP ownership (src/l2/ownership.ts): the pure decision every node
 * runs on its view of the group. Table tests for spreading, stickiness on
 * return, conflicts, clean leave, link health and start-up; and properties
 * checked over many VIPs: every VIP has exactly one owner when the views
 * agree, and a node leaving moves only its own VIPs.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { decideOwnership, electOwner, rendezvousOrder, rendezvousScore, type LinkHealth, type NodeView } from '../../src/l2/ownership.js';

const V = ['192.0.2.10', '192.0.2.11', '192.0.2.12', '192.0.2.13'];
/** Rendezvous orders of V over node-a/b/c, from rendezvousScore (pinned by the golden test below). */
const ORDER: Record<string, string[]> = {
  '192.0.2.10': ['node-c', 'node-a', 'node-b'],
  '192.0.2.11': ['node-b', 'node-a', 'node-c'],
  '192.0.2.12': ['node-c', 'node-b', 'node-a'],
  '192.0.2.13': ['node-b', 'node-a', 'node-c'],
};

function node(name: string, o: { health?: LinkHealth; candidates?: string[]; claims?: string[]; starting?: boolean } = {}): NodeView {
  return { name, health: o.health ?? 'up', candidates: new Set(o.candidates ?? V), claims: new Set(o.claims ?? []), ...(o.starting ? { starting: true } : {}) };
}

const sorted = (s: Set<string>): string[] => [...s].sort();

describe('rendezvous hashing', () => {
  it('scores are fixed numbers, the same on every node and every version (golden values)', () => {
    // Changing the hash would make nodes of two xlb versions disagree on owners.
    assert.equal(rendezvousScore('node-a', '192.0.2.10'), 2020464158);
    assert.equal(rendezvousScore('node-b', '192.0.2.10'), 619894344);
    assert.equal(rendezvousScore('', ''), 579050429);
    for (const [vip, order] of Object.entries(ORDER)) assert.deepEqual(rendezvousOrder(vip, ['node-a', 'node-b', 'node-c']), order, vip);
  });

  it('spreads 3000 VIPs over three nodes within 10% of an even share', () => {
    const count: Record<string, number> = { a: 0, b: 0, c: 0 };
    for (let i = 0; i < 3000; i++) count[rendezvousOrder(`198.18.${i >> 8}.${i & 255}`, ['a', 'b', 'c'])[0]]++;
    for (const [n, c] of Object.entries(count)) assert.ok(c > 900 && c < 1100, `${n} got ${c} of 3000`);
  });

  it('the order does not depend on the order nodes are listed in', () => {
    for (const vip of V) assert.deepEqual(rendezvousOrder(vip, ['node-c', 'node-b', 'node-a']), ORDER[vip]);
  });
});

interface Row {
  description: string;
  self: NodeView;
  peers: NodeView[];
  settled?: boolean;
  /** What self owns. */
  owns: string[];
}

const rows: Row[] = [
  {
    description: 'nobody claims anything: self takes the VIPs it ranks first for',
    self: node('node-a'),
    peers: [node('node-b'), node('node-c')],
    owns: [],
  },
  {
    description: 'nobody claims anything: node-b takes .11 and .13, where it ranks first',
    self: node('node-b'),
    peers: [node('node-a'), node('node-c')],
    owns: ['192.0.2.11', '192.0.2.13'],
  },
  {
    description: 'alone (no live peer): self takes every candidate',
    self: node('node-a'),
    peers: [],
    owns: V,
  },
  {
    description: 'a peer that is dead (left out of the live peers) no longer outranks self: node-a takes node-b\'s VIPs',
    self: node('node-a'),
    peers: [node('node-c')],
    owns: ['192.0.2.11', '192.0.2.13'],
  },
  {
    description: 'stickiness: node-c is back but node-a keeps .10, which it claims, although node-c ranks first',
    self: node('node-a', { claims: ['192.0.2.10'] }),
    peers: [node('node-b'), node('node-c')],
    owns: ['192.0.2.10'],
  },
  {
    description: 'stickiness, from the returning node: node-c does not take .10 back from node-a, which claims it',
    self: node('node-c'),
    peers: [node('node-a', { claims: ['192.0.2.10'] }), node('node-b')],
    owns: ['192.0.2.12'],
  },
  {
    description: 'conflict: node-a and node-b both claim .11; node-b outranks node-a for it and keeps it',
    self: node('node-b', { claims: ['192.0.2.11'] }),
    peers: [node('node-a', { claims: ['192.0.2.11'] })],
    owns: ['192.0.2.11', '192.0.2.12', '192.0.2.13'],
  },
  {
    description: 'conflict, from the loser: node-a releases .11 to node-b',
    self: node('node-a', { claims: ['192.0.2.11'] }),
    peers: [node('node-b', { claims: ['192.0.2.11'] })],
    owns: ['192.0.2.10'],
  },
  {
    description: 'conflict among claimants only: node-c ranks first for .10 but does not claim it, so the better claimant of a and b keeps it',
    self: node('node-a', { claims: ['192.0.2.10'] }),
    peers: [node('node-b', { claims: ['192.0.2.10'] }), node('node-c')],
    owns: ['192.0.2.10'],
  },
  {
    description: 'clean leave: node-c left (not live); node-a takes .10, where it ranks next',
    self: node('node-a'),
    peers: [node('node-b')],
    owns: ['192.0.2.10'],
  },
  {
    description: 'link down on self: owns nothing, even what it claims',
    self: node('node-a', { health: 'down', claims: V }),
    peers: [node('node-b')],
    owns: [],
  },
  {
    description: 'link down on the claimant: node-b (down) claims .11 and .13; node-a takes them',
    self: node('node-a'),
    peers: [node('node-b', { health: 'down', claims: ['192.0.2.11', '192.0.2.13'] })],
    owns: V,
  },
  {
    description: 'a degraded claimant (some interfaces down) yields to a node with every interface up',
    self: node('node-a'),
    peers: [node('node-b', { health: 'degraded', claims: ['192.0.2.11'] })],
    owns: V,
  },
  {
    description: 'a degraded node still owns when nobody healthier wants the VIP',
    self: node('node-a', { health: 'degraded' }),
    peers: [node('node-b', { health: 'down' })],
    owns: V,
  },
  {
    description: 'a peer that does not want a VIP (no local backend) is no candidate for it',
    self: node('node-a', { candidates: ['192.0.2.11'] }),
    peers: [node('node-b', { candidates: ['192.0.2.13'] })],
    owns: ['192.0.2.11'],
  },
  {
    description: 'self does not own what it does not want, even when it claimed it',
    self: node('node-a', { candidates: [], claims: ['192.0.2.10'] }),
    peers: [],
    owns: [],
  },
  {
    description: 'not settled (just started): self claims nothing new, even alone',
    self: node('node-a'),
    peers: [],
    settled: false,
    owns: [],
  },
  {
    description: 'after a kill -9: node-b took .11 over while node-a was down; node-a, back and starting with .11 from its ARP map, yields to node-b (past its start)',
    self: node('node-b', { claims: ['192.0.2.11'] }),
    peers: [node('node-a', { claims: ['192.0.2.10', '192.0.2.11'], candidates: ['192.0.2.10', '192.0.2.11'], starting: true })],
    owns: ['192.0.2.11', '192.0.2.12', '192.0.2.13'],
  },
  {
    description: 'after a kill -9, from node-a (starting): it ranks before node-b for .10, but node-b took .10 over and keeps it; node-a owns nothing',
    self: node('node-a', { claims: ['192.0.2.10'], starting: true }),
    peers: [node('node-b', { claims: ['192.0.2.10'] })],
    owns: [],
  },
  {
    description: 'after a restart: node-a, starting, is the only claimant of .11 (node-b held it): node-b does not take it although it ranks first',
    self: node('node-b'),
    peers: [node('node-a', { claims: ['192.0.2.11'], candidates: ['192.0.2.11'], starting: true })],
    owns: ['192.0.2.10', '192.0.2.12', '192.0.2.13'],
  },
  {
    description: 'two starting claimants of one VIP: the rendezvous order settles it, as between settled claimants',
    self: node('node-a', { claims: ['192.0.2.11'], starting: true }),
    peers: [node('node-b', { claims: ['192.0.2.11'], starting: true })],
    owns: ['192.0.2.10'],
  },
  {
    description: 'not settled: self keeps what it claims and still wins',
    self: node('node-a', { claims: ['192.0.2.10', '192.0.2.11'] }),
    peers: [node('node-b', { claims: ['192.0.2.11'] })],
    settled: false,
    owns: ['192.0.2.10'],
  },
];

describe('decideOwnership', () => {
  for (const r of rows) {
    it(r.description, () => {
      assert.deepEqual(sorted(decideOwnership({ self: r.self, livePeers: r.peers, settled: r.settled ?? true })), [...r.owns].sort());
    });
  }

  it('a deferred VIP is not newly claimed, but one already claimed is kept', () => {
    const self = node('node-a', { candidates: ['192.0.2.10', '192.0.2.11'], claims: ['192.0.2.11'] });
    const owns = decideOwnership({ self, livePeers: [], settled: true, deferred: new Set(['192.0.2.10', '192.0.2.11']) });
    assert.deepEqual(sorted(owns), ['192.0.2.11']);
  });

  it('does not change its input', () => {
    const self = node('node-a', { claims: ['192.0.2.10'] });
    decideOwnership({ self, livePeers: [node('node-b')], settled: true });
    assert.deepEqual(sorted(self.claims as Set<string>), ['192.0.2.10']);
  });
});

describe('electOwner', () => {
  it('is undefined when no node wants the VIP or every candidate is down', () => {
    assert.equal(electOwner('192.0.2.99', [node('node-a'), node('node-b')]), undefined);
    assert.equal(electOwner('192.0.2.10', [node('node-a', { health: 'down' })]), undefined);
  });
});

/** Every node decides from the same (agreeing) view; returns VIP -> owners. */
function decideAll(nodes: NodeView[], vips: string[]): Map<string, string[]> {
  const owners = new Map<string, string[]>(vips.map((v) => [v, []]));
  for (const self of nodes) {
    for (const v of decideOwnership({ self, livePeers: nodes.filter((n) => n !== self), settled: true })) owners.get(v)!.push(self.name);
  }
  return owners;
}

describe('properties over many VIPs', () => {
  const vips = Array.from({ length: 200 }, (_, i) => `192.0.2.${i + 1}`);
  const names = ['node-a', 'node-b', 'node-c', 'node-d'];

  it('with agreeing views, every VIP has exactly one owner, and each node owns some', () => {
    const nodes = names.map((n) => node(n, { candidates: vips }));
    const owners = decideAll(nodes, vips);
    for (const [v, o] of owners) assert.equal(o.length, 1, `${v}: ${o.join(',')}`);
    for (const n of names) assert.ok([...owners.values()].some((o) => o[0] === n), `${n} owns nothing`);
  });

  it('a node leaving moves only its own VIPs; the others stay where they were', () => {
    const nodes = names.map((n) => node(n, { candidates: vips }));
    const first = decideAll(nodes, vips);
    // Each node now claims what it owns; node-d leaves.
    const claimed = nodes.map((n) => node(n.name, { candidates: vips, claims: vips.filter((v) => first.get(v)![0] === n.name) }));
    const after = decideAll(claimed.filter((n) => n.name !== 'node-d'), vips);
    for (const v of vips) {
      const was = first.get(v)![0];
      assert.equal(after.get(v)!.length, 1);
      if (was !== 'node-d') assert.equal(after.get(v)![0], was, `${v} moved from ${was}`);
      else assert.equal(after.get(v)![0], rendezvousOrder(v, ['node-a', 'node-b', 'node-c'])[0]);
    }
  });

  it('after a split brain in which every node claimed every VIP, one round of decisions leaves exactly one owner each', () => {
    const nodes = names.map((n) => node(n, { candidates: vips, claims: vips }));
    for (const [v, o] of decideAll(nodes, vips)) assert.deepEqual(o, [rendezvousOrder(v, names)[0]], v);
  });
});
