/**
 * Layer 2 heartbeats (src/l2/heartbeat.ts): the datagram codec and the peer
 * table (liveness, ordering across restarts, leaving, start-up).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { decodeHeartbeat, encodeHeartbeat, MAX_DATAGRAM_BYTES, PeerTable, type HeartbeatMessage } from '../../src/l2/heartbeat.js';

const hb = (o: Partial<HeartbeatMessage> = {}): HeartbeatMessage => ({
  type: 'heartbeat',
  node: 'node-b',
  incarnation: 1000,
  seq: 1,
  starting: false,
  health: 'up',
  candidates: ['192.0.2.10', '192.0.2.11'],
  claims: ['192.0.2.11'],
  ...o,
});

const PEERS = [
  { name: 'node-a', address: '198.18.0.11', port: 7947 },
  { name: 'node-b', address: '198.18.0.12', port: 7947 },
  { name: 'node-c', address: '198.18.0.13', port: 7947 },
];
/** node-a's table, dead after 1000 ms, started at t = 0. */
const table = () => new PeerTable('node-a', PEERS, 1000, 0);

describe('heartbeat datagrams', () => {
  it('round-trip through encode and decode', () => {
    assert.deepEqual(decodeHeartbeat(encodeHeartbeat(hb())), hb());
    assert.deepEqual(decodeHeartbeat(encodeHeartbeat(hb({ type: 'leaving', health: 'down', candidates: [], claims: [] }))), hb({ type: 'leaving', health: 'down', candidates: [], claims: [] }));
    assert.deepEqual(decodeHeartbeat(encodeHeartbeat(hb({ type: 'restarting', holdMs: 30000 }))), hb({ type: 'restarting', holdMs: 30000 }));
    assert.equal(JSON.parse(encodeHeartbeat(hb({ holdMs: 5 })).toString()).holdMs, undefined, 'holdMs only on restarting');
  });

  const bad: Array<[string, unknown, RegExp]> = [
    ['not JSON', 'hello', /not JSON/],
    ['another protocol', { xlb: 'bgp' }, /field xlb/],
    ['another version', { xlb: 'l2', v: 2 }, /version 2/],
    ['an unknown type', { xlb: 'l2', v: 1, type: 'hello' }, /type "hello"/],
    ['no node', { xlb: 'l2', v: 1, type: 'heartbeat' }, /node is not/],
    ['a negative seq', { ...hb(), xlb: 'l2', v: 1, seq: -1 }, /from node-b: seq/],
    ['a fractional incarnation', { ...hb(), xlb: 'l2', v: 1, incarnation: 1.5 }, /incarnation/],
    ['a starting flag that is not a boolean', { ...hb(), xlb: 'l2', v: 1, starting: 'no' }, /starting is not a boolean/],
    ['an unknown health', { ...hb(), xlb: 'l2', v: 1, health: 'ok' }, /health "ok"/],
    ['a claim that is not IPv4', { ...hb(), xlb: 'l2', v: 1, claims: ['2001:db8::1'] }, /claims is not a list of IPv4/],
    ['candidates that are not a list', { ...hb(), xlb: 'l2', v: 1, candidates: '192.0.2.1' }, /candidates is not a list/],
    ['a restarting message without holdMs', { ...hb(), xlb: 'l2', v: 1, type: 'restarting' }, /from node-b: holdMs of a restarting message is not an integer 1\.\.600000/],
    ['a restarting message holding for more than 10 minutes', { ...hb(), xlb: 'l2', v: 1, type: 'restarting', holdMs: 600001 }, /holdMs/],
  ];
  for (const [what, value, re] of bad) {
    it(`refuses ${what}, naming the field`, () => {
      const buf = Buffer.from(typeof value === 'string' ? value : JSON.stringify(value));
      assert.throws(() => decodeHeartbeat(buf), (e: Error) => re.test(e.message));
    });
  }

  it('refuses to encode more VIPs than one datagram holds', () => {
    const many = Array.from({ length: 4000 }, (_, i) => `198.18.${i >> 8}.${i & 255}`);
    assert.throws(() => encodeHeartbeat(hb({ candidates: many, claims: many })), new RegExp(`exceed one UDP datagram \\(${MAX_DATAGRAM_BYTES}\\)`));
  });
});

describe('peer table', () => {
  it('skips this node in the peer list and sends to the others', () => {
    assert.deepEqual(table().endpoints().map((p) => p.name), ['node-b', 'node-c']);
  });

  it('a heartbeat makes a peer alive until the dead-after window passes without another', () => {
    const t = table();
    assert.equal(t.receive(hb(), '198.18.0.12', 100), 'changed');
    assert.deepEqual(t.live(1099).map((p) => p.name), ['node-b']);
    assert.deepEqual(t.expire(1099), []);
    assert.deepEqual(t.live(1100), []);
    assert.deepEqual(t.expire(1100), ['node-b']);
    assert.deepEqual(t.expire(1200), [], 'a death is reported once');
  });

  it('an unchanged heartbeat only refreshes; a change of claims, candidates or health is a change', () => {
    const t = table();
    t.receive(hb({ seq: 1 }), '198.18.0.12', 0);
    assert.equal(t.receive(hb({ seq: 2 }), '198.18.0.12', 200), 'refreshed');
    assert.equal(t.receive(hb({ seq: 3, claims: [] }), '198.18.0.12', 400), 'changed');
    assert.equal(t.receive(hb({ seq: 4, claims: [], candidates: ['192.0.2.10'] }), '198.18.0.12', 600), 'changed');
    assert.equal(t.receive(hb({ seq: 5, claims: [], candidates: ['192.0.2.10'], health: 'degraded' }), '198.18.0.12', 800), 'changed');
  });

  it('a heartbeat from a dead peer is a change (it came back)', () => {
    const t = table();
    t.receive(hb({ seq: 1 }), '198.18.0.12', 0);
    t.expire(5000);
    assert.equal(t.receive(hb({ seq: 2 }), '198.18.0.12', 5000), 'changed');
  });

  it('drops duplicates and reordered datagrams, but hears a restarted peer (new incarnation) at once', () => {
    const t = table();
    t.receive(hb({ seq: 5 }), '198.18.0.12', 0);
    assert.equal(t.receive(hb({ seq: 5 }), '198.18.0.12', 10), 'stale');
    assert.equal(t.receive(hb({ seq: 4 }), '198.18.0.12', 10), 'stale');
    assert.equal(t.receive(hb({ incarnation: 900, seq: 99 }), '198.18.0.12', 10), 'stale', 'an older process');
    assert.equal(t.receive(hb({ incarnation: 2000, seq: 0, claims: [] }), '198.18.0.12', 20), 'changed');
    assert.equal(t.live(20)[0].claims.size, 0);
  });

  it('a leaving peer is dead at once and its claims are gone, until it heartbeats again', () => {
    const t = table();
    t.receive(hb({ seq: 1 }), '198.18.0.12', 0);
    assert.equal(t.receive(hb({ type: 'leaving', seq: 2 }), '198.18.0.12', 10), 'changed');
    assert.deepEqual(t.live(11), []);
    assert.equal(t.receive(hb({ type: 'leaving', seq: 3 }), '198.18.0.12', 12), 'refreshed', 'the second leaving changes nothing');
    assert.equal(t.status(12).find((p) => p.name === 'node-b')!.left, true);
    assert.equal(t.receive(hb({ seq: 4 }), '198.18.0.12', 20), 'changed');
    assert.deepEqual(t.live(21).map((p) => p.name), ['node-b']);
  });

  it('a restarting peer is held alive with its claims for the hold it asked for, past the dead-after window', () => {
    const t = table();
    t.receive(hb({ seq: 1 }), '198.18.0.12', 0);
    assert.equal(t.receive(hb({ type: 'restarting', seq: 2, holdMs: 30000 }), '198.18.0.12', 100), 'refreshed', 'the decision sees no change');
    assert.deepEqual(t.expire(29_000), []);
    assert.deepEqual(t.live(29_000).map((p) => [p.name, [...p.claims]]), [['node-b', ['192.0.2.11']]]);
    const st = t.status(29_000).find((p) => p.name === 'node-b')!;
    assert.equal(st.alive, true);
    assert.equal(st.restarting, true);
    assert.equal(t.restartHeld('node-b'), true);
    assert.deepEqual(t.expire(30_100), ['node-b'], 'dead once the hold is over');
    assert.equal(t.restartHeld('node-b'), true, 'the log can tell why it died');
    assert.deepEqual(t.live(30_100), []);
  });

  it('a restarting peer\'s next incarnation ends the hold: it is heard as itself, starting, at once', () => {
    const t = table();
    t.receive(hb({ seq: 1 }), '198.18.0.12', 0);
    t.receive(hb({ type: 'restarting', seq: 2, holdMs: 30000 }), '198.18.0.12', 100);
    assert.equal(t.receive(hb({ incarnation: 2000, seq: 0, starting: true, candidates: ['192.0.2.11'] }), '198.18.0.12', 3000), 'changed');
    const st = t.status(3000).find((p) => p.name === 'node-b')!;
    assert.equal(st.restarting, false);
    assert.equal(st.starting, true);
    assert.equal(t.live(3000)[0].starting, true);
    assert.deepEqual(t.live(3999).map((p) => p.name), ['node-b']);
    assert.deepEqual(t.live(4000), [], 'no hold any more: the dead-after window applies again');
  });

  it('a restarting message from a peer already dead holds nothing (its VIPs have been taken over)', () => {
    const t = table();
    t.receive(hb({ seq: 1 }), '198.18.0.12', 0);
    t.expire(2000);
    assert.equal(t.receive(hb({ type: 'restarting', seq: 2, holdMs: 30000 }), '198.18.0.12', 2000), 'refreshed');
    assert.deepEqual(t.live(2001), []);
    assert.equal(t.status(2001).find((p) => p.name === 'node-b')!.restarting, false);
  });

  it('ignores senders that are not configured peers, and this node\'s own name', () => {
    const t = table();
    assert.equal(t.receive(hb({ node: 'node-x' }), '198.18.0.99', 0), 'unknown');
    assert.equal(t.receive(hb({ node: 'node-a' }), '198.18.0.99', 0), 'unknown');
  });

  it('matches peers by name and reports a source address other than the configured one', () => {
    const t = table();
    t.receive(hb(), '198.18.9.9', 0);
    const b = t.status(50).find((p) => p.name === 'node-b')!;
    assert.equal(b.alive, true);
    assert.equal(b.seenFrom, '198.18.9.9');
    assert.equal(b.lastSeenMs, 50);
  });

  it('is settled once every peer has been heard, or after one dead-after window since start', () => {
    const t = table();
    assert.equal(t.settled(0), false);
    t.receive(hb({ node: 'node-b' }), '198.18.0.12', 10);
    assert.equal(t.settled(20), false, 'node-c not heard yet');
    t.receive(hb({ node: 'node-c' }), '198.18.0.13', 30);
    assert.equal(t.settled(30), true);
    assert.equal(table().settled(999), false);
    assert.equal(table().settled(1000), true, 'silent peers are dead by then');
  });

  it('waits for a live peer that is still starting (first sync pending), up to the grace period', () => {
    const t = table();
    t.receive(hb({ node: 'node-b', seq: 1, starting: true, candidates: [], claims: [] }), '198.18.0.12', 10);
    t.receive(hb({ node: 'node-c', seq: 1 }), '198.18.0.13', 10);
    assert.equal(t.settled(20), false, 'node-b is starting');
    t.receive(hb({ node: 'node-b', seq: 2, starting: true, candidates: [], claims: [] }), '198.18.0.12', 1500);
    assert.equal(t.settled(1500), false, 'still starting after a dead-after window: keep waiting');
    assert.equal(t.receive(hb({ node: 'node-b', seq: 3, starting: false, candidates: [], claims: [] }), '198.18.0.12', 1600), 'changed', 'ready is a change');
    assert.equal(t.settled(1600), true);
  });

  it('stops waiting for a starting peer after the grace period, or when it dies', () => {
    const t = table();
    t.receive(hb({ node: 'node-b', seq: 1, starting: true }), '198.18.0.12', 10);
    t.receive(hb({ node: 'node-b', seq: 2, starting: true }), '198.18.0.12', 4900);
    assert.equal(t.settled(4999), false);
    assert.equal(t.settled(5000), true, '5 dead-after windows');
    const u = table();
    u.receive(hb({ node: 'node-b', seq: 1, starting: true }), '198.18.0.12', 10);
    assert.equal(u.settled(1009), false);
    assert.equal(u.settled(1010), true, 'node-b silent for a window: dead, no longer waited for');
  });

  it('status lists every configured peer, heard or not', () => {
    const t = table();
    t.receive(hb(), '198.18.0.12', 0);
    assert.deepEqual(t.status(300), [
      { name: 'node-b', address: '198.18.0.12', port: 7947, alive: true, restarting: false, lastSeenMs: 300, left: false, starting: false, health: 'up', claims: 1 },
      { name: 'node-c', address: '198.18.0.13', port: 7947, alive: false, restarting: false, lastSeenMs: null, left: false, starting: false, health: null, claims: 0 },
    ]);
  });
});
