/**
 * Pins: xlb never pins maps under /sys/fs/bpf itself (libbpf's default when
 * no pin root is given), and removing an instance's pins leaves /sys/fs/bpf
 * as it was.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { BpfObject, ensureBpffs, PIN_BASE, removePins } from '../../src/datapath/bpf.js';
import { OBJ, buildObjects } from './harness.js';

describe('pins', () => {
  it('an object with maps pinned by name is refused without a pin root, before anything is pinned', () => {
    buildObjects();
    ensureBpffs();
    assert.throws(() => BpfObject.open(OBJ.xdp), /map xlb_\w+ is pinned by name; give a pinRoot \(it would be pinned at \/sys\/fs\/bpf\/xlb_\w+\)/);
    assert.equal(fs.existsSync('/sys/fs/bpf/xlb_frontends'), false);
  });

  it('removing the last instance\'s pins removes the pin base too; another instance keeps it', () => {
    ensureBpffs();
    const sfx = randomBytes(4).toString('hex');
    const had = fs.existsSync(PIN_BASE) && fs.readdirSync(PIN_BASE).length > 0;
    const a = path.join(PIN_BASE, `pins-a-${sfx}`);
    const b = path.join(PIN_BASE, `pins-b-${sfx}`);
    for (const d of [a, b]) {
      const obj = BpfObject.open(OBJ.xdp, { pinRoot: d });
      try {
        obj.load();
      } finally {
        obj.close();
      }
      assert.ok(fs.existsSync(path.join(d, 'xlb_frontends')), `${d} holds the pinned maps`);
    }
    removePins(a);
    assert.equal(fs.existsSync(a), false);
    assert.ok(fs.existsSync(b), 'the other instance keeps its pins');
    removePins(b);
    assert.equal(fs.existsSync(b), false);
    if (!had) assert.equal(fs.existsSync(PIN_BASE), false, `${PIN_BASE} removed once empty`);
  });
});
