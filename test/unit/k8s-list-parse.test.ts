/**
 * Parsing a list response one item at a time (src/sources/kubernetes/rest.ts,
 * parseList): the result must be exactly JSON.parse's,
 * with each item passed through the callback once, in order, whatever the
 * items' strings hold; anything the scan does not recognise is parsed whole.
 * The same for ListStreamParser, fed the text in chunks cut anywhere.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ListStreamParser, ListTooLargeError, parseList } from '../../src/sources/kubernetes/rest.js';
import { prng } from '../helpers/prng.js';

/** parseList with an identity callback that records what it saw. */
function parsed(text: string) {
  const seen: unknown[] = [];
  const body = parseList(text, (it) => {
    seen.push(it);
    return it;
  });
  return { body, seen };
}

/** Strings that stress a scanner: quotes, backslashes, brackets, the word items, escapes. */
const NASTY = ['plain', 'a "quoted" word', 'back\\slash', 'ends with \\', '\\"', '{"items":[1,2]}', '}]},{', 'items', '\u00e9\u4e2d\ud83d\ude00', '\n\t\r', '', '\\\\"x'];

function slice(i: number, rand: () => number) {
  const pick = () => NASTY[Math.floor(rand() * NASTY.length)];
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: `s-${i}`, namespace: 'ns', labels: { note: pick() }, annotations: { 'x/y': pick() } },
    addressType: 'IPv4',
    ports: [{ name: pick(), protocol: 'TCP', port: 80 }],
    endpoints: Array.from({ length: 3 }, (_, k) => ({ addresses: [`198.18.0.${k}`], conditions: { ready: rand() < 0.5 }, hints: { forZones: [{ name: pick() }] }, deep: [[[pick()]], { a: [pick(), 1.5e3, null, true] }] })),
  };
}

/** Up to 29 slices in a list, `items` first or last, compact or indented. */
function randomList(round: number, rand: () => number) {
  const items = Array.from({ length: Math.floor(rand() * 30) }, (_, i) => slice(i, rand));
  const list = round % 3 === 0 ? { items, metadata: { resourceVersion: '7', continue: 'items' }, kind: 'X' } : { kind: 'EndpointSliceList', apiVersion: 'v1', metadata: { resourceVersion: String(round) }, items };
  return { items, text: JSON.stringify(list, null, round % 2 ? 2 : undefined) };
}

/** JSON the item scan does not recognise: parsed whole, same result as JSON.parse. */
const ODD = [
  '{"metadata":{},"items":[]}',
  '{"metadata":{},"items":null}',
  '{"metadata":{}}',
  '{"items":[1,"two",null,{"a":1}]}',
  '{"items":[{"a":1},"two"]}',
  '{"items":["{\\"a\\":1}"]}',
  '{"items":[[{"a":1}]]}',
  '{"items":[{"a":1}],"items":[{"b":2}]}',
  '{"items":[{"a":1}],"items":[]}',
  '{"kind":"items","items":[{"a":1}],"x":"items"}',
  '[{"items":[{"a":1}]}]',
  '"items"',
  '  {  "items"  :  [  { "a" : [ 1 , { } ] } , { }  ]  }  ',
];

/** Text that is not JSON: JSON.parse's SyntaxError. */
const NOT_JSON = ['{"items":[{"a":1},{"a":]}', '{"items":[{"a":1}', '{"items":[{"a":"unterminated}]}', '{"items":[{"a":1}]', ''];

describe('parseList: a list one item at a time', () => {
  it('gives what JSON.parse gives, and hands every item to the callback once, in order, whatever its strings hold', () => {
    const rand = prng(20261123);
    for (let round = 0; round < 40; round++) {
      const { items, text } = randomList(round, rand);
      // The scan itself, not only the result (a wrong split would fall back to a whole parse):
      // given the text as one chunk, it hands every item out before end() is asked.
      const scanned: unknown[] = [];
      new ListStreamParser((it) => (scanned.push(it), it)).push(text);
      assert.deepEqual(scanned, items, `round ${round}: the scan found each item`);
      const { body, seen } = parsed(text);
      assert.deepEqual(body, JSON.parse(text), `round ${round}`);
      assert.deepEqual(seen, JSON.parse(text).items, `round ${round}: every item once, in order`);
    }
  });

  it('uses what the callback returns as the item', () => {
    const text = JSON.stringify({ metadata: {}, items: [{ a: 1 }, { a: 2 }] });
    assert.deepEqual(parseList(text, (it) => ({ b: (it as { a: number }).a * 10 })), { metadata: {}, items: [{ b: 10 }, { b: 20 }] });
  });

  it('parses whole what it does not recognise, with the same result', () => {
    for (const text of ODD) assert.deepEqual(parsed(text).body, JSON.parse(text), text);
  });

  it('stops at the item over maxItems: the rest of the body is never read', () => {
    const limits = { maxItems: 3, path: '/api/v1/services', limit: 3 };
    const seen: unknown[] = [];
    const p = new ListStreamParser((it) => (seen.push(it), it), limits);
    p.push('{"metadata":{},"items":[{"a":1},{"a":2},{"a":3}');
    assert.throws(() => p.push(',{"a":4},{"a":5}'), (e: unknown) => e instanceof ListTooLargeError && /more than 3 items/.test(e.message));
    assert.equal(seen.length, 3, 'the fourth item is not handed on');
    // The same limit when the body is parsed whole (an odd shape the scan gives up on).
    const odd = new ListStreamParser((it) => it, limits);
    const text = '{"items":[1,2,3,4]}';
    odd.push(text);
    assert.throws(() => odd.end(() => text), ListTooLargeError);
  });

  it('rejects text that is not JSON with JSON.parse\'s error', () => {
    for (const text of NOT_JSON) assert.throws(() => parseList(text, (it) => it), SyntaxError, text);
  });
});

/** The text fed to a ListStreamParser in chunks of random sizes (1 to `max` characters); what the callback saw before end(), and the result. */
function streamed(text: string, rand: () => number, max: number) {
  const seen: unknown[] = [];
  const p = new ListStreamParser((it) => {
    seen.push(it);
    return it;
  });
  for (let i = 0; i < text.length; ) {
    const n = 1 + Math.floor(rand() * max);
    p.push(text.slice(i, i + n));
    i += n;
  }
  const beforeEnd = seen.length;
  return { body: p.end(() => text), seen, beforeEnd };
}

describe('ListStreamParser: parseList while the body arrives', () => {
  it('gives what JSON.parse gives, every item handed out as soon as it is complete, for chunks cut anywhere', () => {
    const rand = prng(20261124);
    for (let round = 0; round < 60; round++) {
      const { items, text } = randomList(round, rand);
      const { body, seen, beforeEnd } = streamed(text, rand, [1, 7, 64, 4096][round % 4]);
      assert.deepEqual(body, JSON.parse(text), `round ${round}`);
      assert.deepEqual(seen, items, `round ${round}: every item once, in order`);
      assert.equal(beforeEnd, items.length, `round ${round}: all items were handed out while the text arrived, none at the end`);
    }
  });

  it('uses what the callback returns as the item', () => {
    const p = new ListStreamParser((it) => ({ b: (it as { a: number }).a * 10 }));
    for (const c of ['{"metadata":{},"it', 'ems":[{"a":1},', '{"a":2}]}']) p.push(c);
    assert.deepEqual(p.end(() => ''), { metadata: {}, items: [{ b: 10 }, { b: 20 }] });
  });

  it('parses whole what it does not recognise, with the same result, and rejects what is not JSON as JSON.parse does', () => {
    const rand = prng(7);
    for (const text of ODD) for (const max of [1, 3, 100]) assert.deepEqual(streamed(text, rand, max).body, JSON.parse(text), `${text} in chunks of up to ${max}`);
    for (const text of NOT_JSON) {
      for (const max of [1, 5, 100]) assert.throws(() => streamed(text, rand, max), SyntaxError, `${text} in chunks of up to ${max}`);
    }
  });
});
